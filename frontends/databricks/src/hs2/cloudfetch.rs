//! Large results by download links (CloudFetch, `URL_BASED_SET`).
//!
//! Past a size threshold a result is spooled, as it streams from the worker, into chunk
//! files under `<data-dir>/results/<operation>/`: each an Arrow IPC stream (schema,
//! batches, end marker), LZ4-framed when the client reads LZ4. FetchResults hands out
//! links to finished chunks; the client GETs them from `/results/…` on the HTTP listener
//! without an Authorization header, so each link is signed (HMAC-SHA256 over operation,
//! chunk and expiry, with a key made at start-up) and expires. A chunk is written and
//! served from disk piece by piece, never held whole in memory. The spooler stays at most
//! a few chunks ahead of the links handed out (backpressure to the worker), and a closed,
//! cancelled or idle operation's files are removed.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use gateway::planner::{ErrorKind, QueryError};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::items::{Item, Items, Shape};
use super::results::{self, IpcEncoder};

/// One download link.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub url: String,
    /// Epoch seconds.
    pub expiry: i64,
    pub start: i64,
    pub rows: i64,
    /// Uncompressed size of the Arrow stream.
    pub bytes: i64,
}

/// Sizes and lifetimes of spooled results.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// A chunk closes once it holds this many (uncompressed) bytes.
    pub chunk_bytes: usize,
    /// Finished chunks not yet handed out before the spooler waits.
    pub ahead: usize,
    pub link_ttl: Duration,
}

struct Chunk {
    start: i64,
    rows: i64,
    bytes: i64,
    path: PathBuf,
}

#[derive(Default)]
struct SpoolState {
    chunks: Vec<Chunk>,
    /// Chunks already handed out as links.
    handed: usize,
    done: bool,
    failed: Option<QueryError>,
}

/// The chunk files of one result.
pub struct Spool {
    dir: PathBuf,
    state: Mutex<SpoolState>,
    changed: Notify,
    stop: CancellationToken,
}

impl Spool {
    /// Start spooling `ahead` then `items` into `dir` in the background.
    pub fn start(
        dir: PathBuf,
        shape: &Shape,
        ahead: VecDeque<Item>,
        items: Option<Items>,
        config: &SpoolConfig,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        let spool = Arc::new(Self {
            dir,
            state: Mutex::new(SpoolState::default()),
            changed: Notify::new(),
            stop: cancel.child_token(),
        });
        let writer = ChunkWriter {
            schema_message: shape.schema_message.clone(),
            wire: shape.wire.clone(),
            lz4: shape.lz4,
            encoder: None,
        };
        tokio::spawn(spool.clone().run(writer, ahead, items, config.clone()));
        spool
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SpoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn run(
        self: Arc<Self>,
        mut writer: ChunkWriter,
        mut ahead: VecDeque<Item>,
        mut items: Option<Items>,
        config: SpoolConfig,
    ) {
        let outcome = async {
            tokio::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&self.dir)
                .await
                .map_err(|e| spool_error(&e))?;
            let mut current: Option<OpenChunk> = None;
            let mut row: i64 = 0;
            loop {
                // Backpressure: wait while enough chunks wait to be handed out.
                loop {
                    let notified = self.changed.notified();
                    {
                        let state = self.lock();
                        if state.chunks.len() - state.handed < config.ahead.max(1) {
                            break;
                        }
                    }
                    tokio::select! {
                        _ = notified => {}
                        _ = self.stop.cancelled() => return Ok(()),
                    }
                }
                let next = match ahead.pop_front() {
                    Some(item) => Some(Ok(item)),
                    None => match items.as_mut() {
                        None => None,
                        Some(items) => tokio::select! {
                            next = items.next() => next,
                            _ = self.stop.cancelled() => return Ok(()),
                        },
                    },
                };
                match next {
                    None => {
                        if let Some(chunk) = current.take() {
                            self.close_chunk(chunk).await?;
                        }
                        return Ok(());
                    }
                    Some(Err(e)) => return Err(e),
                    Some(Ok(item)) => {
                        let rows = item_rows(&item);
                        let message = writer.message(item)?;
                        if current.is_none() {
                            let n = self.lock().chunks.len();
                            current = Some(OpenChunk::create(&self.dir, n, row, &writer).await?);
                        }
                        if let Some(chunk) = current.as_mut() {
                            chunk.write(&message, rows).await?;
                        }
                        row += rows as i64;
                        if current
                            .as_ref()
                            .is_some_and(|c| c.raw_bytes >= config.chunk_bytes)
                        {
                            if let Some(chunk) = current.take() {
                                self.close_chunk(chunk).await?;
                            }
                        }
                    }
                }
            }
        }
        .await;
        {
            let mut state = self.lock();
            state.done = true;
            if let Err(e) = outcome {
                tracing::debug!(error = %e, "spooling a result failed");
                state.failed = Some(e);
            }
        }
        self.changed.notify_waiters();
    }

    async fn close_chunk(&self, chunk: OpenChunk) -> Result<(), QueryError> {
        let chunk = chunk.finish().await?;
        self.lock().chunks.push(chunk);
        self.changed.notify_waiters();
        Ok(())
    }

    /// Hand out the chunks finished since the last call (at most `max`), waiting up to
    /// `wait` for one; whether more follow.
    pub async fn next_chunks(
        &self,
        wait: Duration,
        max: usize,
    ) -> Result<(Vec<ChunkRef>, bool), QueryError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.changed.notified();
            {
                let mut state = self.lock();
                let ready = state.chunks.len() - state.handed;
                if ready > 0 || state.done {
                    let from = state.handed;
                    let to = from + ready.min(max.max(1));
                    state.handed = to;
                    let out: Vec<ChunkRef> = state.chunks[from..to]
                        .iter()
                        .enumerate()
                        .map(|(i, c)| ChunkRef {
                            index: from + i,
                            start: c.start,
                            rows: c.rows,
                            bytes: c.bytes,
                        })
                        .collect();
                    let more = !(state.done && state.handed == state.chunks.len());
                    if out.is_empty() {
                        if let Some(e) = state.failed.clone() {
                            return Err(e);
                        }
                    }
                    drop(state);
                    self.changed.notify_waiters();
                    return Ok((out, more || self.lock().failed.is_some()));
                }
            }
            if self.stop.is_cancelled() {
                return Err(QueryError::new(
                    ErrorKind::Cancelled,
                    "the query was cancelled",
                ));
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Ok((Vec::new(), true));
            }
        }
    }

    /// The file of chunk `n`, if it is finished.
    pub fn chunk_path(&self, n: usize) -> Option<PathBuf> {
        self.lock().chunks.get(n).map(|c| c.path.clone())
    }

    /// Stop spooling and delete the files.
    pub fn remove(&self) {
        self.stop.cancel();
        let dir = self.dir.clone();
        tokio::spawn(async move {
            // The spooler may still be closing a file: give it a moment.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = tokio::fs::remove_dir_all(&dir).await;
        });
    }
}

/// A finished chunk as FetchResults describes it.
#[derive(Debug, Clone, Copy)]
pub struct ChunkRef {
    pub index: usize,
    pub start: i64,
    pub rows: i64,
    pub bytes: i64,
}

fn item_rows(item: &Item) -> usize {
    match item {
        Item::Batch(b) => b.num_rows(),
        Item::Flight(_, rows) => *rows,
    }
}

fn spool_error(e: &std::io::Error) -> QueryError {
    QueryError::new(
        ErrorKind::ResourcesExhausted,
        format!("the result could not be written for download: {e}"),
    )
}

/// Turns items into IPC messages in the wire types.
struct ChunkWriter {
    schema_message: Vec<u8>,
    wire: datafusion::arrow::datatypes::SchemaRef,
    lz4: bool,
    encoder: Option<IpcEncoder>,
}

impl ChunkWriter {
    fn message(&mut self, item: Item) -> Result<Vec<u8>, QueryError> {
        let encode = |e: datafusion::arrow::error::ArrowError| QueryError::internal(e.to_string());
        match item {
            Item::Flight(data, _) => Ok(results::encapsulate(&data)),
            Item::Batch(batch) => {
                let batch = results::to_wire(&batch, &self.wire).map_err(encode)?;
                if self.encoder.is_none() {
                    self.encoder = Some(IpcEncoder::new(&self.wire).map_err(encode)?);
                }
                match self.encoder.as_mut() {
                    Some(encoder) => encoder.encode(&batch).map_err(encode),
                    None => Err(QueryError::internal("no IPC encoder")),
                }
            }
        }
    }
}

/// A chunk file being written.
struct OpenChunk {
    path: PathBuf,
    file: tokio::fs::File,
    lz4: Option<lz4_flex::frame::FrameEncoder<Vec<u8>>>,
    start: i64,
    rows: i64,
    raw_bytes: usize,
}

impl OpenChunk {
    async fn create(
        dir: &Path,
        n: usize,
        start: i64,
        writer: &ChunkWriter,
    ) -> Result<Self, QueryError> {
        let path = dir.join(format!("{n}.arrows"));
        // Results are the principal's data: the owner alone may read them.
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .await
            .map_err(|e| spool_error(&e))?;
        let mut chunk = Self {
            path,
            file,
            lz4: writer
                .lz4
                .then(|| lz4_flex::frame::FrameEncoder::new(Vec::new())),
            start,
            rows: 0,
            raw_bytes: 0,
        };
        chunk.write(&writer.schema_message, 0).await?;
        Ok(chunk)
    }

    async fn write(&mut self, bytes: &[u8], rows: usize) -> Result<(), QueryError> {
        self.rows += rows as i64;
        self.raw_bytes += bytes.len();
        match self.lz4.as_mut() {
            Some(encoder) => {
                encoder.write_all(bytes).map_err(|e| spool_error(&e))?;
                let out = std::mem::take(encoder.get_mut());
                self.file.write_all(&out).await.map_err(|e| spool_error(&e))
            }
            None => self
                .file
                .write_all(bytes)
                .await
                .map_err(|e| spool_error(&e)),
        }
    }

    async fn finish(mut self) -> Result<Chunk, QueryError> {
        self.write(&results::END_OF_STREAM, 0).await?;
        if let Some(encoder) = self.lz4.take() {
            let rest = encoder
                .finish()
                .map_err(|e| spool_error(&std::io::Error::other(e)))?;
            self.file
                .write_all(&rest)
                .await
                .map_err(|e| spool_error(&e))?;
        }
        self.file.flush().await.map_err(|e| spool_error(&e))?;
        Ok(Chunk {
            start: self.start,
            rows: self.rows,
            bytes: self.raw_bytes as i64,
            path: self.path,
        })
    }
}

/// Signs and checks download links.
pub struct Signer {
    key: [u8; 32],
}

impl Signer {
    pub fn new() -> Self {
        Self {
            key: rand::random(),
        }
    }

    fn signature(&self, operation: &str, chunk: usize, expiry: i64) -> [u8; 32] {
        hmac_sha256(
            &self.key,
            format!("{operation}/{chunk}/{expiry}").as_bytes(),
        )
    }

    /// The link to chunk `chunk.index` of `operation`, under `base` (scheme and host the
    /// client reached the gateway by).
    pub fn link(&self, base: &str, operation: &str, chunk: &ChunkRef, ttl: Duration) -> Link {
        let expiry = now_seconds() + ttl.as_secs().max(1) as i64;
        let sig = hex::encode(self.signature(operation, chunk.index, expiry));
        Link {
            url: format!(
                "{base}/results/{operation}/{}?expires={expiry}&sig={sig}",
                chunk.index
            ),
            expiry,
            start: chunk.start,
            rows: chunk.rows,
            bytes: chunk.bytes,
        }
    }

    /// Whether a link's signature is good and it has not expired.
    pub fn check(
        &self,
        operation: &str,
        chunk: usize,
        expiry: i64,
        sig: &str,
    ) -> Result<(), &'static str> {
        let presented = hex::decode(sig).map_err(|_| "the link's signature is malformed")?;
        let expected = self.signature(operation, chunk, expiry);
        if !bool::from(presented.as_slice().ct_eq(&expected)) {
            return Err("the link's signature is not valid");
        }
        if expiry <= now_seconds() {
            return Err("the link has expired: fetch the result again for new links");
        }
        Ok(())
    }
}

impl Default for Signer {
    fn default() -> Self {
        Self::new()
    }
}

fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// HMAC-SHA256 (RFC 2104) of `message` under a key of at most 64 bytes.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..key.len().min(64)].copy_from_slice(&key[..key.len().min(64)]);
    let inner_pad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer_pad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(inner_pad)
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(outer_pad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// A chunk file as a body stream, read piece by piece.
pub async fn file_body(path: &Path) -> std::io::Result<(u64, axum::body::Body)> {
    let file = tokio::fs::File::open(path).await?;
    let len = file.metadata().await?.len();
    let stream = futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = vec![0u8; 256 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    Ok((len, axum::body::Body::from_stream(stream)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn links_are_signed_and_expire() {
        let signer = Signer::new();
        let chunk = ChunkRef {
            index: 2,
            start: 10,
            rows: 5,
            bytes: 100,
        };
        let link = signer.link("http://h:1", "abcd", &chunk, Duration::from_secs(60));
        let query = link.url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        let params: std::collections::HashMap<_, _> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let expiry: i64 = params["expires"].parse().expect("expiry");
        assert!(signer.check("abcd", 2, expiry, params["sig"]).is_ok());
        assert!(signer.check("abcd", 3, expiry, params["sig"]).is_err());
        assert!(signer.check("abce", 2, expiry, params["sig"]).is_err());
        assert!(signer.check("abcd", 2, expiry + 1, params["sig"]).is_err());
        assert!(Signer::new()
            .check("abcd", 2, expiry, params["sig"])
            .is_err());
        let past = now_seconds() - 5;
        let sig = hex::encode(signer.signature("abcd", 2, past));
        assert_eq!(
            signer.check("abcd", 2, past, &sig),
            Err("the link has expired: fetch the result again for new links")
        );
    }
}
