//! One pg connection: TLS negotiation, then pgwire's message dispatch, with a guard under
//! the codec that bounds what a client's messages may cost.
//!
//! pgwire decodes a message only once it holds all of it, and allows a Query, Parse or Bind
//! of up to 1 GiB but a password message of only 10,000 bytes (beyond it the connection
//! closes with no word). The [`Guard`] reads the byte stream under the codec and, message
//! by message:
//!
//! ```text
//!  password ≤ 10,000 bytes, other messages within their limit ──► passed through
//!  password ≤ 64 KiB (an Entra token with many groups) ──► kept aside; pgwire gets a stub
//!                                                          and the loop swaps it back
//!  over its limit ──► skipped as it streams (never buffered); pgwire gets a stub of the
//!                     same type and the loop answers 08P01/54000, then goes on (or
//!                     closes, when the message was a password)
//! ```

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use futures::{FutureExt, SinkExt, StreamExt};
use pgwire::api::{ClientInfo, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::startup::PasswordMessageFamily;
use pgwire::messages::PgWireFrontendMessage;
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

use super::PgFrontend;

/// Longest a client may take from connecting to being signed in.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a statement that computes checks whether its client is still connected.
const GONE_CHECK: Duration = Duration::from_millis(200);

/// Largest password message pgwire decodes itself.
const PGWIRE_PASSWORD_LIMIT: usize = 10_000;

/// Largest password message (an access token, NUL-terminated): Entra tokens with many
/// groups take 10–12 KB.
pub const MAX_PASSWORD_MESSAGE: usize = 64 << 10;

/// What one message of each kind may weigh (its body, without type and length).
#[derive(Debug, Clone, Copy)]
pub struct MessageLimits {
    /// Query and Parse: a statement's text, and a little.
    pub statement: usize,
    /// Bind: the parameter values of one execution.
    pub bind: usize,
    /// Every other message (they are small by nature).
    pub other: usize,
}

impl MessageLimits {
    pub fn new(max_statement_bytes: usize) -> Self {
        Self {
            statement: max_statement_bytes + (64 << 10),
            bind: 16 << 20,
            other: 1 << 20,
        }
    }

    fn of(&self, kind: u8) -> usize {
        match kind {
            b'p' => MAX_PASSWORD_MESSAGE,
            b'Q' | b'P' => self.statement,
            b'B' => self.bind,
            _ => self.other,
        }
    }
}

/// What the guard did that the connection loop must act on.
#[derive(Debug)]
enum Event {
    /// A password message too long for pgwire: its body, to put back in place of the stub.
    LongPassword(BytesMut),
    /// A message over its limit was skipped; a stub of its type stands in for it.
    TooLong {
        kind: u8,
        bytes: usize,
        limit: usize,
    },
    /// A message that is not what its type says (pgwire's decoders would panic on it): the
    /// stream ends there.
    Malformed(String),
}

type Events = Arc<Mutex<VecDeque<Event>>>;

/// Longest untyped message (startup, SSLRequest, GSSENCRequest, CancelRequest), as pgwire
/// and PostgreSQL allow.
const MAX_STARTUP_MESSAGE: usize = 10_000;

/// Where the guard is in the client's byte stream.
#[derive(Debug)]
enum Step {
    /// Before an untyped message (length, then code).
    Startup,
    /// Before a typed message's header.
    Header,
    /// Reading a message whole (`kind` None: untyped; `body` starts after the length).
    Collect {
        kind: Option<u8>,
        left: usize,
        body: BytesMut,
    },
    /// Inside a message that is dropped (over its limit).
    Skip(usize),
    /// After a malformed message: nothing more reaches the codec.
    Closed,
}

/// The byte stream under pgwire's codec, message limits and shapes checked (see the
/// module doc).
pub struct Guard<S> {
    inner: S,
    limits: MessageLimits,
    step: Step,
    /// Bytes read from the client, not yet sorted.
    input: BytesMut,
    /// Bytes for the codec.
    output: BytesMut,
    events: Events,
}

impl<S> Guard<S> {
    fn new(inner: S, limits: MessageLimits, already_read: BytesMut, events: Events) -> Self {
        Self {
            inner,
            limits,
            step: Step::Startup,
            input: already_read,
            output: BytesMut::new(),
            events,
        }
    }

    fn event(&self, event: Event) {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(event);
    }

    fn malformed(&mut self, why: String) {
        self.event(Event::Malformed(why));
        self.step = Step::Closed;
        self.input.clear();
    }

    /// Sort what has been read into output, as far as the input goes.
    fn sort(&mut self) -> io::Result<()> {
        loop {
            match &mut self.step {
                Step::Closed => {
                    self.input.clear();
                    return Ok(());
                }
                Step::Startup => {
                    if self.input.len() < 4 {
                        return Ok(());
                    }
                    let length = i32::from_be_bytes([
                        self.input[0],
                        self.input[1],
                        self.input[2],
                        self.input[3],
                    ]);
                    match usize::try_from(length) {
                        Ok(length @ 8..=MAX_STARTUP_MESSAGE) => {
                            self.input.advance(4);
                            self.step = Step::Collect {
                                kind: None,
                                left: length - 4,
                                body: BytesMut::with_capacity(length - 4),
                            };
                        }
                        _ => self.malformed(format!("invalid length of startup packet: {length}")),
                    }
                }
                Step::Header => {
                    if self.input.len() < 5 {
                        return Ok(());
                    }
                    let kind = self.input[0];
                    let length = i32::from_be_bytes([
                        self.input[1],
                        self.input[2],
                        self.input[3],
                        self.input[4],
                    ]);
                    let Some(body) = usize::try_from(length).ok().and_then(|l| l.checked_sub(4))
                    else {
                        self.malformed(format!("invalid message length {length}"));
                        continue;
                    };
                    self.input.advance(5);
                    let limit = self.limits.of(kind);
                    if body > limit {
                        self.event(Event::TooLong {
                            kind,
                            bytes: body,
                            limit,
                        });
                        stub(kind, &mut self.output);
                        self.step = Step::Skip(body);
                    } else {
                        self.step = Step::Collect {
                            kind: Some(kind),
                            left: body,
                            body: BytesMut::with_capacity(body),
                        };
                    }
                }
                Step::Collect { kind, left, body } => {
                    let n = (*left).min(self.input.len());
                    body.extend_from_slice(&self.input.split_to(n));
                    *left -= n;
                    if *left > 0 {
                        return Ok(());
                    }
                    let (kind, body) = (*kind, std::mem::take(body));
                    self.finish(kind, body);
                }
                Step::Skip(left) => {
                    if *left == 0 {
                        self.step = Step::Header;
                        continue;
                    }
                    if self.input.is_empty() {
                        return Ok(());
                    }
                    let n = (*left).min(self.input.len());
                    *left -= n;
                    self.input.advance(n);
                }
            }
        }
    }

    /// A whole message: checked, then passed on (or kept aside, or refused).
    fn finish(&mut self, kind: Option<u8>, body: BytesMut) {
        let Some(kind) = kind else {
            // Untyped: SSLRequest and GSSENCRequest are followed by another untyped message.
            const SSL_REQUEST: i32 = 80_877_103;
            const GSSENC_REQUEST: i32 = 80_877_104;
            let code = i32::from_be_bytes([body[0], body[1], body[2], body[3]]);
            if let Err(why) = shape::untyped(code, &body[4..]) {
                return self.malformed(why);
            }
            self.output.put_i32(body.len() as i32 + 4);
            self.output.extend_from_slice(&body);
            self.step = if code == SSL_REQUEST || code == GSSENC_REQUEST {
                Step::Startup
            } else {
                Step::Header
            };
            return;
        };
        if let Err(why) = shape::typed(kind, &body) {
            return self.malformed(why);
        }
        self.step = Step::Header;
        if kind == b'p' && body.len() > PGWIRE_PASSWORD_LIMIT {
            self.event(Event::LongPassword(body));
            stub(b'p', &mut self.output);
            return;
        }
        self.output.put_u8(kind);
        self.output.put_i32(body.len() as i32 + 4);
        self.output.extend_from_slice(&body);
    }
}

/// The shapes of frontend messages, checked before pgwire decodes them (its decoders read
/// fields without checking that the body holds them).
mod shape {
    use bytes::Buf;

    type Check = Result<(), String>;

    fn cstring(body: &mut &[u8], what: &str) -> Check {
        match body.iter().position(|b| *b == 0) {
            Some(end) => {
                body.advance(end + 1);
                Ok(())
            }
            None => Err(format!("{what} is not a NUL-terminated string")),
        }
    }

    fn int(body: &mut &[u8], width: usize, what: &str) -> Result<i64, String> {
        if body.len() < width {
            return Err(format!("{what} is missing"));
        }
        Ok(match width {
            1 => i64::from(body.get_u8()),
            2 => i64::from(body.get_i16()),
            _ => i64::from(body.get_i32()),
        })
    }

    fn count(body: &mut &[u8], what: &str) -> Result<usize, String> {
        usize::try_from(int(body, 2, what)?).map_err(|_| format!("{what} is negative"))
    }

    fn end(body: &[u8], what: &str) -> Check {
        if body.is_empty() {
            Ok(())
        } else {
            Err(format!("{what} has {} bytes too many", body.len()))
        }
    }

    /// A typed message's body.
    pub fn typed(kind: u8, mut body: &[u8]) -> Check {
        let b = &mut body;
        match kind {
            b'Q' => cstring(b, "the query")?,
            b'P' => {
                cstring(b, "the statement name")?;
                cstring(b, "the query")?;
                let n = count(b, "the parameter type count")?;
                for _ in 0..n {
                    int(b, 4, "a parameter type")?;
                }
            }
            b'B' => {
                cstring(b, "the portal name")?;
                cstring(b, "the statement name")?;
                for _ in 0..count(b, "the parameter format count")? {
                    int(b, 2, "a parameter format")?;
                }
                for _ in 0..count(b, "the parameter count")? {
                    let length = int(b, 4, "a parameter length")?;
                    if length < -1 || length > b.len() as i64 {
                        return Err(format!("a parameter of length {length}"));
                    }
                    b.advance(length.max(0) as usize);
                }
                for _ in 0..count(b, "the result format count")? {
                    int(b, 2, "a result format")?;
                }
            }
            b'D' | b'C' => {
                let target = int(b, 1, "the target")? as u8;
                if target != b'S' && target != b'P' {
                    return Err(format!("target {:?} is neither S nor P", target as char));
                }
                cstring(b, "the name")?;
            }
            b'E' => {
                cstring(b, "the portal name")?;
                int(b, 4, "the row limit")?;
            }
            b'S' | b'H' | b'X' | b'c' => {}
            b'f' => cstring(b, "the message")?,
            // Passwords, SASL, CopyData: bytes as they are.
            b'p' | b'd' => return Ok(()),
            other => return Err(format!("unknown message type {:?}", other as char)),
        }
        end(body, &format!("a {:?} message", kind as char))
    }

    /// An untyped message's body after its code.
    pub fn untyped(code: i32, mut body: &[u8]) -> Check {
        const CANCEL: i32 = 80_877_102;
        const SSL: i32 = 80_877_103;
        const GSSENC: i32 = 80_877_104;
        match code {
            SSL | GSSENC => end(body, "an SSLRequest"),
            // The process id, then a key of 4 bytes (protocol 3.0) up to 256 (3.2).
            CANCEL if (8..=260).contains(&body.len()) => Ok(()),
            CANCEL => Err("a CancelRequest of the wrong length".into()),
            _ if code >> 16 == 3 => {
                // Parameter names and values, then an empty name that ends the message
                // (pgwire reads up to the first empty name, whatever the length says).
                loop {
                    let b = &mut body;
                    match b.first() {
                        Some(0) if b.len() == 1 => return Ok(()),
                        Some(0) => return Err("bytes after the startup parameters".into()),
                        Some(_) => {
                            cstring(b, "a startup parameter name")?;
                            cstring(b, "a startup parameter value")?;
                        }
                        None => return Err("the startup parameters are not terminated".into()),
                    }
                }
            }
            other => Err(format!(
                "unsupported frontend protocol {}.{}",
                other >> 16,
                other & 0xffff
            )),
        }
    }
}

/// A message of `kind` with an empty (but well-formed) body, standing in for one the
/// guard took out of the stream.
fn stub(kind: u8, out: &mut BytesMut) {
    let body: &[u8] = match kind {
        // Query: an empty string.
        b'Q' | b'p' => b"\0",
        // Parse: no name, no text, no parameter types.
        b'P' => b"\0\0\0\0",
        // Bind: no portal, no statement, no formats, no values, no result formats.
        b'B' => b"\0\0\0\0\0\0\0\0",
        // Describe / Close: a portal with no name.
        b'D' | b'C' => b"P\0",
        // Execute: the unnamed portal, no row limit.
        b'E' => b"\0\0\0\0\0",
        _ => b"",
    };
    out.put_u8(kind);
    out.put_i32(4 + body.len() as i32);
    out.extend_from_slice(body);
}

impl<S: AsyncRead + Unpin> AsyncRead for Guard<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            // What was read before (by the TLS negotiation, or past the last message).
            this.sort()?;
            if !this.output.is_empty() {
                let n = this.output.len().min(buf.remaining());
                buf.put_slice(&this.output.split_to(n));
                return Poll::Ready(Ok(()));
            }
            if matches!(this.step, Step::Closed) {
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; 8192];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    if read.filled().is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    this.input.extend_from_slice(read.filled());
                }
                other => return other,
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guard<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serve one pg connection until the client goes (or breaks the protocol).
pub async fn serve(
    socket: TcpStream,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    frontend: Arc<PgFrontend>,
    limits: MessageLimits,
) -> io::Result<()> {
    let startup = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup);
    // A second handle on the socket (a dup of its descriptor, sharing its non-blocking
    // mode): pgwire reads the socket only between messages, so a client that closes its
    // connection while a statement computes would go unnoticed until a row is written.
    let watch = {
        use std::os::fd::AsFd;
        socket
            .as_fd()
            .try_clone_to_owned()
            .ok()
            .map(std::net::TcpStream::from)
    };
    let negotiated = tokio::select! {
        _ = &mut startup => return Ok(()),
        negotiated = negotiate_tls(socket, tls) => negotiated?,
    };
    // A client that sent direct TLS where there is none.
    let Some(negotiated) = negotiated else {
        return Ok(());
    };
    // The guard goes under the codec; what the negotiation already read goes through it.
    let parts = negotiated.into_parts();
    let events = Events::default();
    let guard = Guard::new(parts.io, limits, parts.read_buf, events.clone());
    let mut guarded = FramedParts::new(guard, parts.codec);
    guarded.write_buf = parts.write_buf;
    let mut socket = Framed::from_parts(guarded);
    socket.set_state(PgWireConnectionState::AwaitingStartup);

    let startup_handler = frontend.startup_handler();
    let simple = frontend.simple_query_handler();
    let extended = frontend.extended_query_handler();
    let copy = frontend.copy_handler();
    let cancel = frontend.cancel_handler();
    // An event that stands for the message just decoded (a stub's), if the next one does.
    let take_event = || {
        let mut events = events.lock().unwrap_or_else(|e| e.into_inner());
        match events.front() {
            Some(Event::Malformed(_)) | None => None,
            Some(_) => events.pop_front(),
        }
    };
    let malformed = || {
        let events = events.lock().unwrap_or_else(|e| e.into_inner());
        events.iter().find_map(|e| match e {
            Event::Malformed(why) => Some(why.clone()),
            _ => None,
        })
    };
    loop {
        let signing_in = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        // The guard checks every message's shape first; should pgwire's decoder panic all
        // the same, only this connection ends.
        let next = std::panic::AssertUnwindSafe(socket.next()).catch_unwind();
        let message = if signing_in {
            tokio::select! {
                _ = &mut startup => Ok(None),
                message = next => message,
            }
        } else {
            next.await
        };
        let protocol_error = |message: String| {
            PgWireError::UserError(Box::new(ErrorInfo::new(
                "FATAL".into(),
                "08P01".into(),
                message,
            )))
        };
        let message = match message {
            Ok(Some(Ok(message))) => message,
            // A message pgwire could not decode: say so before closing.
            Ok(Some(Err(e))) => {
                let error = protocol_error(format!("invalid message from the client: {e}"));
                let _ = process_error(&mut socket, error, false).await;
                return Ok(());
            }
            Err(_) => {
                let error = protocol_error("invalid message from the client".into());
                let _ = process_error(&mut socket, error, false).await;
                return Ok(());
            }
            Ok(None) => {
                if let Some(why) = malformed() {
                    let error = protocol_error(format!("invalid message from the client: {why}"));
                    let _ = process_error(&mut socket, error, false).await;
                }
                return Ok(());
            }
        };
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            return Ok(());
        }
        let is_extended = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        let message = match take_event() {
            None | Some(Event::Malformed(_)) => message,
            Some(Event::LongPassword(body)) => match message {
                PgWireFrontendMessage::PasswordMessageFamily(_) => {
                    PgWireFrontendMessage::PasswordMessageFamily(PasswordMessageFamily::Raw(body))
                }
                other => other,
            },
            Some(Event::TooLong { kind, bytes, limit }) => {
                let password = kind == b'p';
                // The statement's code is the one the planner gives a long statement.
                let (severity, code, what) = match kind {
                    b'p' => ("FATAL", "08P01", "password message"),
                    b'Q' | b'P' => ("ERROR", "54001", "statement"),
                    b'B' => ("ERROR", "54000", "Bind message (its parameter values)"),
                    _ => ("FATAL", "08P01", "message"),
                };
                let error = PgWireError::UserError(Box::new(ErrorInfo::new(
                    severity.into(),
                    code.into(),
                    format!("{what} is too long: {bytes} bytes (at most {limit})"),
                )));
                process_error(&mut socket, error, is_extended).await?;
                if password || severity == "FATAL" {
                    // The client may still be sending the message's body: read (and skip)
                    // it for a moment, so the close does not reset the connection before
                    // the client has read why.
                    let drain = async { while let Some(Ok(_)) = socket.next().await {} };
                    let _ =
                        tokio::time::timeout(std::time::Duration::from_millis(500), drain).await;
                    let _ = socket.close().await;
                    return Ok(());
                }
                continue;
            }
        };
        let is_cancel = matches!(message, PgWireFrontendMessage::CancelRequest(_));
        // Only the messages that run a statement are watched.
        let runs = matches!(
            message,
            PgWireFrontendMessage::Query(_) | PgWireFrontendMessage::Execute(_)
        );
        let processed = tokio::select! {
            processed = process_message(
                message,
                &mut socket,
                startup_handler.clone(),
                simple.clone(),
                extended.clone(),
                copy.clone(),
                cancel.clone(),
            ) => processed,
            // The client went away: dropping the statement cancels its query.
            _ = client_gone(watch.as_ref().filter(|_| runs)) => return Ok(()),
        };
        if let Err(e) = processed {
            let fatal = e.is_fatal();
            process_error(&mut socket, e, is_extended).await?;
            if fatal {
                return Ok(());
            }
        }
        if is_cancel {
            return Ok(());
        }
    }
}

/// Returns once the client has closed its connection (checked every [`GONE_CHECK`]; never
/// without a watch). Unread bytes (a pipelined message, a TLS alert) count as a client
/// still there.
async fn client_gone(watch: Option<&std::net::TcpStream>) {
    let Some(watch) = watch else {
        return std::future::pending().await;
    };
    let mut byte = [0u8; 1];
    loop {
        tokio::time::sleep(GONE_CHECK).await;
        match watch.peek(&mut byte) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::DataType;

    /// The guard over a byte stream: what the codec reads, and the events.
    fn guarded(input: &[u8], limits: MessageLimits) -> (Vec<u8>, Vec<Event>) {
        let events = Events::default();
        let mut guard = Guard::new(
            tokio::io::empty(),
            limits,
            BytesMut::from(input),
            events.clone(),
        );
        guard.sort().expect("sorts");
        let out = guard.output.to_vec();
        let events = events.lock().expect("events").drain(..).collect();
        (out, events)
    }

    fn startup() -> Vec<u8> {
        let body = b"\x00\x03\x00\x00user\0me\0\0";
        let mut m = ((body.len() + 4) as i32).to_be_bytes().to_vec();
        m.extend_from_slice(body);
        m
    }

    fn typed(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn messages_within_limits_pass_unchanged() {
        let mut input = startup();
        input.extend(typed(b'p', b"short-token\0"));
        input.extend(typed(b'Q', b"select 1\0"));
        let (out, events) = guarded(&input, MessageLimits::new(1 << 20));
        assert_eq!(out, input);
        assert!(events.is_empty());
    }

    #[test]
    fn a_long_password_is_kept_aside_and_a_huge_one_refused() {
        let token = vec![b'x'; 12_000];
        let mut body = token.clone();
        body.push(0);
        let mut input = startup();
        input.extend(typed(b'p', &body));
        let (out, events) = guarded(&input, MessageLimits::new(1 << 20));
        assert_eq!(out[..startup().len()], startup()[..]);
        assert_eq!(out[startup().len()..], typed(b'p', b"\0")[..]);
        assert!(matches!(&events[..], [Event::LongPassword(b)] if b[..] == body[..]));

        let mut input = startup();
        input.extend(typed(b'p', &vec![b'y'; MAX_PASSWORD_MESSAGE + 1]));
        let (_, events) = guarded(&input, MessageLimits::new(1 << 20));
        assert!(matches!(&events[..], [Event::TooLong { kind: b'p', .. }]));
    }

    #[test]
    fn an_oversized_statement_is_skipped_and_what_follows_passes() {
        let mut input = startup();
        input.extend(typed(b'Q', &vec![b'x'; 5000]));
        input.extend(typed(b'Q', b"select 1\0"));
        let limits = MessageLimits {
            statement: 1000,
            bind: 1000,
            other: 1000,
        };
        let (out, events) = guarded(&input, limits);
        let mut expected = startup();
        expected.extend(typed(b'Q', b"\0"));
        expected.extend(typed(b'Q', b"select 1\0"));
        assert_eq!(out, expected);
        assert!(matches!(
            &events[..],
            [Event::TooLong {
                kind: b'Q',
                bytes: 5000,
                limit: 1000
            }]
        ));
    }

    /// What `fuzz_pg_startup_and_messages` found: pgwire's decoders read fields past a
    /// short body (a panic), and its startup decoder stops at the first empty parameter
    /// name whatever the length says (the stream after it read as the next messages).
    #[test]
    fn malformed_messages_end_the_stream_before_pgwire_reads_them() {
        let startup_then = |kind: u8, body: &[u8]| {
            let mut input = startup();
            input.extend(typed(kind, body));
            input.extend(typed(b'Q', b"select 1\0"));
            guarded(&input, MessageLimits::new(1 << 20))
        };
        for (kind, body) in [
            (b'P', &b"s\0q\0"[..]),
            (b'P', &b"s\0q\0\0\x02\0\0"[..]),
            (b'B', &b"\0\0\0\x01"[..]),
            (b'B', &b"\0\0\0\0\0\x01\x7f\0\0\0x"[..]),
            (b'E', &b"\0\0"[..]),
            (b'D', &b"X\0"[..]),
            (b'Q', &b"no terminator"[..]),
            (b'Q', &b"a\0b\0"[..]),
            (b'S', &b"extra"[..]),
        ] {
            let (out, events) = startup_then(kind, body);
            assert_eq!(out, startup(), "{:?} {body:?}", kind as char);
            assert!(
                matches!(&events[..], [Event::Malformed(_)]),
                "{:?} {body:?}: {events:?}",
                kind as char
            );
        }
        let empty_name = b"\x00\x03\x00\x00user\0me\0\0p\0\0";
        let mut input = ((empty_name.len() + 4) as i32).to_be_bytes().to_vec();
        input.extend_from_slice(empty_name);
        let (out, events) = guarded(&input, MessageLimits::new(1 << 20));
        assert!(out.is_empty());
        assert!(matches!(&events[..], [Event::Malformed(why)] if why.contains("after")));
    }

    #[test]
    fn ssl_request_is_followed_by_an_untyped_message() {
        let mut input = vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
        input.extend(startup());
        input.extend(typed(b'p', b"t\0"));
        let (out, events) = guarded(&input, MessageLimits::new(1 << 20));
        assert_eq!(out, input);
        assert!(events.is_empty());
    }

    /// Bytes a client may send: startup, SSL and GSS requests, passwords, the extended
    /// protocol, through the guard and pgwire's decoder, and Bind values through ours.
    #[test]
    fn fuzz_pg_startup_and_messages() {
        use pgwire::api::Type;
        use pgwire::messages::{DecodeContext, ProtocolVersion};
        let mut seed = startup();
        seed.extend(typed(b'p', b"sluice_token\0"));
        seed.extend(typed(b'Q', b"select 1; select 2\0"));
        let mut extended = startup();
        extended.extend(typed(
            b'P',
            b"s1\0select $1::int8, $2\0\0\x02\0\0\0\x14\0\0\0\x19",
        ));
        let mut bind = b"\0s1\0\0\x02\0\x01\0\0\0\x02".to_vec();
        bind.extend(8i32.to_be_bytes());
        bind.extend(42i64.to_be_bytes());
        bind.extend(3i32.to_be_bytes());
        bind.extend(b"abc\0\0");
        extended.extend(typed(b'B', &bind));
        extended.extend(typed(b'D', b"P\0"));
        extended.extend(typed(b'E', b"\0\0\0\0\0"));
        extended.extend(typed(b'S', b""));
        let mut ssl = vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
        ssl.extend(startup());
        let cancel = vec![0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2];
        let mut long_password = startup();
        long_password.extend(typed(b'p', &[b'x'; 12_000]));
        let seeds = vec![seed, extended, ssl, cancel, long_password];
        let limits = MessageLimits {
            statement: 4096,
            bind: 4096,
            other: 1024,
        };
        let wire_types = [
            Type::INT8,
            Type::INT4,
            Type::TEXT,
            Type::NUMERIC,
            Type::TIMESTAMP,
            Type::DATE,
            Type::BOOL,
            Type::FLOAT8,
            Type::BYTEA,
            Type::INT8_ARRAY,
            Type::TEXT_ARRAY,
        ];
        let targets = [
            None,
            Some(DataType::Int64),
            Some(DataType::Decimal128(38, 10)),
            Some(DataType::Date32),
            Some(DataType::List(std::sync::Arc::new(
                datafusion::arrow::datatypes::Field::new("item", DataType::Int64, true),
            ))),
        ];
        fuzz::bytes("pg_messages", &seeds, |input| {
            let (out, _events) = guarded(input, limits);
            let mut out = BytesMut::from(&out[..]);
            let mut context = DecodeContext::new(ProtocolVersion::PROTOCOL3_0);
            context.awaiting_frontend_ssl = false;
            while let Ok(Some(message)) = PgWireFrontendMessage::decode(&mut out, &context) {
                match message {
                    PgWireFrontendMessage::Startup(_) => context.awaiting_frontend_startup = false,
                    PgWireFrontendMessage::Bind(bind) => {
                        for (i, raw) in bind.parameters.iter().enumerate().take(16) {
                            let wire = &wire_types[i % wire_types.len()];
                            let target = targets[i % targets.len()].as_ref();
                            let binary =
                                bind.parameter_format_codes.get(i).is_some_and(|f| *f == 1);
                            let _ = crate::params::decode(i, raw.as_deref(), binary, wire, target);
                        }
                    }
                    _ => {}
                }
            }
        });
    }
}
