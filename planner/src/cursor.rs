//! Server-side cursors as PostgreSQL writes them: `DECLARE … CURSOR FOR`, `FETCH`, `MOVE`,
//! `CLOSE`.
//!
//! DECLARE parses with the SQL parser (its query is planned like any other); FETCH and
//! MOVE have forms the SQL parser does not read (`FETCH c`, `FETCH FORWARD FROM c`, MOVE
//! at all), so a text that is one of them is read here from its tokens. What a cursor
//! holds and how it moves is the gateway's (`gateway::cursors`): rows only go forward.

use datafusion::sql::sqlparser::ast::{self, Ident};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::{ErrorKind, QueryError};

/// Where a FETCH or MOVE goes, as PostgreSQL's grammar allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// The next `n` rows (`NEXT`, `n`, `FORWARD n`; n ≥ 1).
    Forward(u64),
    /// Every row left (`ALL`, `FORWARD ALL`).
    All,
    /// The row at this position, counting from 1 (`FIRST`, `ABSOLUTE n`).
    Absolute(i64),
    /// The row this many after the current one (`RELATIVE n`; 0 is the current row again).
    Relative(i64),
    /// Anything that goes back or stays (`PRIOR`, `LAST`, `BACKWARD`, `FORWARD 0`, a
    /// negative count): a cursor that streams its rows cannot.
    Backward,
}

/// A statement on an open cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorCommand {
    Fetch {
        name: String,
        direction: Direction,
    },
    Move {
        name: String,
        direction: Direction,
    },
    /// `CLOSE name`, or `CLOSE ALL` (None).
    Close(Option<String>),
}

/// A `DECLARE name CURSOR … FOR query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Declaration {
    pub name: String,
    /// `WITH HOLD`: the cursor outlives the transaction that declared it.
    pub hold: bool,
    /// `BINARY`: FETCH answers in binary (for the simple query protocol).
    pub binary: bool,
    pub query: Box<ast::Query>,
}

/// PostgreSQL's answer to a cursor asked to go back.
pub fn backward_error() -> QueryError {
    QueryError::new(
        ErrorKind::InvalidState,
        "cursor can only scan forward (sluice streams a cursor's rows from the worker and \
         keeps none it has passed: FETCH NEXT, FORWARD n, ALL, or ABSOLUTE and RELATIVE ahead)",
    )
}

/// A cursor name as PostgreSQL folds it: unquoted names in lower case.
fn folded(ident: &Ident) -> String {
    fold(&ident.value, ident.quote_style)
}

fn fold(name: &str, quote_style: Option<char>) -> String {
    match quote_style {
        Some(_) => name.to_string(),
        None => name.to_lowercase(),
    }
}

/// Whether a text may start with FETCH, MOVE or CLOSE: a check on its first word, made
/// before anything is tokenized (every statement passes here).
fn may_be_cursor_command(sql: &str) -> bool {
    let mut rest = sql.trim_start();
    // Comments before the first word.
    loop {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.split_once('\n').map_or("", |(_, r)| r).trim_start();
        } else if let Some(after) = rest.strip_prefix("/*") {
            // Nested comments end wherever: the tokenizer decides below.
            return after.contains("*/");
        } else {
            break;
        }
    }
    let word: String = rest
        .chars()
        .take(6)
        .take_while(char::is_ascii_alphabetic)
        .collect();
    ["fetch", "move", "close"]
        .iter()
        .any(|verb| word.eq_ignore_ascii_case(verb))
}

/// The declaration in a `DECLARE … CURSOR` statement (None for any other statement).
pub fn declaration(statement: &ast::Statement) -> Result<Option<Declaration>, QueryError> {
    let ast::Statement::Declare { stmts } = statement else {
        return Ok(None);
    };
    let [declare] = stmts.as_slice() else {
        return Err(QueryError::new(
            ErrorKind::Syntax,
            "DECLARE declares one cursor at a time",
        ));
    };
    let (Some(ast::DeclareType::Cursor), Some(query), [name]) = (
        &declare.declare_type,
        &declare.for_query,
        declare.names.as_slice(),
    ) else {
        return Err(QueryError::new(
            ErrorKind::NotSupported,
            "only DECLARE name CURSOR FOR query is supported (no procedural variables)",
        ));
    };
    if declare.scroll == Some(true) {
        return Err(QueryError::new(
            ErrorKind::NotSupported,
            "SCROLL cursors are not supported: sluice streams a cursor's rows from the \
             worker and can only move it forward (declare it NO SCROLL)",
        ));
    }
    Ok(Some(Declaration {
        name: folded(name),
        hold: declare.hold == Some(true),
        binary: declare.binary == Some(true),
        query: query.clone(),
    }))
}

/// `CLOSE` as the SQL parser read it (in a text of several statements).
pub fn close(statement: &ast::Statement) -> Option<CursorCommand> {
    match statement {
        ast::Statement::Close { cursor } => Some(CursorCommand::Close(match cursor {
            ast::CloseCursor::All => None,
            ast::CloseCursor::Specific { name } => Some(folded(name)),
        })),
        _ => None,
    }
}

/// A text that is one FETCH, MOVE or CLOSE statement (an optional `;` after it), read from
/// its tokens; None when the text is anything else. FETCH and MOVE in a text of several
/// statements are refused (the SQL parser reads only some of their forms).
pub fn command(sql: &str) -> Result<Option<CursorCommand>, QueryError> {
    if !may_be_cursor_command(sql) {
        return Ok(None);
    }
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return Ok(None);
    };
    let mut tokens: Vec<Token> = tokens
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect();
    // (MOVE is no keyword of the SQL parser's.)
    let verb = match tokens.first() {
        Some(Token::Word(w)) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
        _ => return Ok(None),
    };
    let verb = match verb.as_str() {
        "FETCH" => "FETCH",
        "MOVE" => "MOVE",
        "CLOSE" => "CLOSE",
        _ => return Ok(None),
    };
    while tokens.last() == Some(&Token::SemiColon) {
        tokens.pop();
    }
    if tokens.contains(&Token::SemiColon) {
        if verb == "CLOSE" {
            // CLOSE parses with the SQL parser, with the statements around it.
            return Ok(None);
        }
        return Err(QueryError::new(
            ErrorKind::NotSupported,
            "send FETCH and MOVE on their own, not with other statements in one query string",
        ));
    }
    let syntax =
        |what: &str| QueryError::new(ErrorKind::Syntax, format!("syntax error in {verb}: {what}"));
    let name = |token: &Token| match token {
        Token::Word(w) => Ok(fold(&w.value, w.quote_style)),
        _ => Err(syntax("expected a cursor name")),
    };
    let args = &tokens[1..];
    if verb == "CLOSE" {
        return match args {
            [Token::Word(w)] if w.quote_style.is_none() && w.keyword == Keyword::ALL => {
                Ok(Some(CursorCommand::Close(None)))
            }
            [cursor] => Ok(Some(CursorCommand::Close(Some(name(cursor)?)))),
            _ => Err(syntax("expected CLOSE name or CLOSE ALL")),
        };
    }
    let Some((cursor, mut direction)) = args.split_last() else {
        return Err(syntax("expected a cursor name"));
    };
    let cursor = name(cursor)?;
    let keyword = |t: &Token| match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.keyword),
        _ => None,
    };
    if let Some(last) = direction.last() {
        if matches!(keyword(last), Some(Keyword::FROM | Keyword::IN)) {
            direction = &direction[..direction.len() - 1];
        }
    }
    let direction = parse_direction(direction).ok_or_else(|| {
        syntax("expected NEXT, PRIOR, FIRST, LAST, ABSOLUTE n, RELATIVE n, n, ALL, FORWARD or BACKWARD")
    })?;
    Ok(Some(match verb {
        "FETCH" => CursorCommand::Fetch {
            name: cursor,
            direction,
        },
        _ => CursorCommand::Move {
            name: cursor,
            direction,
        },
    }))
}

/// A direction's tokens (None: not one PostgreSQL reads).
fn parse_direction(tokens: &[Token]) -> Option<Direction> {
    let keyword = |t: &Token| match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.keyword),
        _ => None,
    };
    // A signed integer constant.
    let count = |tokens: &[Token]| -> Option<i64> {
        let (negative, digits) = match tokens {
            [Token::Minus, digits] => (true, digits),
            [Token::Plus, digits] => (false, digits),
            [digits] => (false, digits),
            _ => return None,
        };
        let Token::Number(digits, _) = digits else {
            return None;
        };
        let n: i64 = digits.parse().ok()?;
        Some(if negative { -n } else { n })
    };
    // `FETCH 0` is the current row again (nothing, before the first).
    let forward = |n: i64| match u64::try_from(n) {
        Ok(0) => Direction::Relative(0),
        Ok(n) => Direction::Forward(n),
        Err(_) => Direction::Backward,
    };
    let Some(first) = tokens.first() else {
        return Some(Direction::Forward(1));
    };
    let rest = &tokens[1..];
    Some(match (keyword(first), rest) {
        (Some(Keyword::NEXT), []) => Direction::Forward(1),
        (Some(Keyword::PRIOR | Keyword::LAST), []) => Direction::Backward,
        (Some(Keyword::FIRST), []) => Direction::Absolute(1),
        (Some(Keyword::ABSOLUTE), rest) => Direction::Absolute(count(rest)?),
        (Some(Keyword::RELATIVE), rest) => Direction::Relative(count(rest)?),
        (Some(Keyword::ALL), []) => Direction::All,
        (Some(Keyword::FORWARD), []) => Direction::Forward(1),
        (Some(Keyword::FORWARD), [all]) if keyword(all) == Some(Keyword::ALL) => Direction::All,
        (Some(Keyword::FORWARD), rest) => forward(count(rest)?),
        (Some(Keyword::BACKWARD), _) => Direction::Backward,
        _ => forward(count(tokens)?),
    })
}
