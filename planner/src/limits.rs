//! Limits on what one statement may ask of the gateway, checked before it is planned.
//!
//! ```text
//!  SQL text ──bytes ≤ max_statement_bytes──► parse (parentheses nest ≤ 128)
//!           ──expression depth ≤ max_expression_depth, nodes ≤ max_expression_nodes──► plan
//! ```
//!
//! The parser builds a chain of binary operators (`1+1+…`, `a=1 OR a=2 OR …`) in a loop,
//! without nesting its own calls, so a 4 KB statement can still be a tree thousands of
//! levels deep, and every recursive walk after the parser (rewrites, planning,
//! optimizing, printing, dropping) then needs stack in proportion. The depth is measured
//! here, on the parsed tree, and a statement over the limit is refused with PostgreSQL's
//! `54001 statement is too complex`; the gateway's threads have stack enough for the
//! limit ([`THREAD_STACK`]). PostgreSQL 15 with its default 2 MB stack plans
//! `SELECT 1+1+…` with about 4,000 terms, and refuses 5,000.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Query, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::error::{ErrorKind, QueryError};

/// Stack of every gateway and worker thread: planning, optimizing, encoding, running and
/// dropping a plan recurse once per level of a statement's expressions, and a statement
/// may nest [`Limits::max_expression_depth`] levels. Sized in a debug build, where frames
/// are largest; only the pages a thread touches are committed.
pub const THREAD_STACK: usize = 64 << 20;

/// What one statement may ask (`[limits]` in the config file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest statement text, in bytes.
    pub max_statement_bytes: usize,
    /// Deepest nesting of expressions and subqueries.
    pub max_expression_depth: usize,
    /// Most expression and query nodes in one statement.
    pub max_expression_nodes: usize,
    /// Memory the queries answered in the gateway itself (catalog queries, queries that
    /// read no table) may hold together; beyond it they fail with `53200`.
    pub local_memory: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_statement_bytes: 4 << 20,
            max_expression_depth: 4_000,
            max_expression_nodes: 500_000,
            local_memory: 512 << 20,
        }
    }
}

impl Limits {
    /// Refuse a text that is longer than a statement may be.
    pub fn check_text(&self, sql: &str) -> Result<(), QueryError> {
        if sql.len() > self.max_statement_bytes {
            return Err(QueryError::new(
                ErrorKind::TooComplex,
                format!(
                    "statement is too long: {} bytes (at most {}, [limits] max_statement_size)",
                    sql.len(),
                    self.max_statement_bytes
                ),
            ));
        }
        // Nesting deeper than a limit takes more opening parentheses than the limit: a
        // statement with fewer (most, and every `SELECT 1`) is not tokenized for it.
        let parentheses = sql.bytes().filter(|&b| b == b'(').count();
        if parentheses <= MAX_NESTED_SPECIAL_FORMS.min(MAX_NESTED_CALLS) {
            return Ok(());
        }
        let (calls, nested) = nested_calls(sql);
        if nested > MAX_NESTED_SPECIAL_FORMS {
            return Err(QueryError::new(
                ErrorKind::TooComplex,
                format!(
                    "statement is too complex: {nested} nested CAST, POSITION, EXTRACT, … \
                     calls (at most {MAX_NESTED_SPECIAL_FORMS})"
                ),
            ));
        }
        if calls > MAX_NESTED_CALLS {
            return Err(QueryError::new(
                ErrorKind::TooComplex,
                format!(
                    "statement is too complex: function calls nested {calls} deep \
                     (at most {MAX_NESTED_CALLS})"
                ),
            ));
        }
        Ok(())
    }

    /// Refuse a parsed statement that nests deeper or has more nodes than allowed.
    pub fn check_statement<V: Visit>(&self, statement: &V) -> Result<(), QueryError> {
        let mut shape = Shape {
            limits: *self,
            depth: 0,
            nodes: 0,
        };
        match statement.visit(&mut shape) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(error) => Err(error),
        }
    }
}

/// Special forms nested in one another at most. The SQL parser reads a special form
/// (`CAST(x AS t)`, `POSITION(a IN b)`, …) and, when that fails, reads it again as a plain
/// function call: each failing form nested in another doubles the work, and 16 nested
/// `CAST(` without `AS` — 100 bytes — kept a thread busy for minutes. Counted on tokens
/// (linear), before the parser sees the text; real statements nest a few.
pub const MAX_NESTED_SPECIAL_FORMS: usize = 8;

/// Function calls nested in one another at most. The SQL parser's work doubles with each
/// level of nested calls (`abs(abs(…))` 20 deep took 40 s in a debug build); what people
/// write nests a handful. Parentheses after the words of SQL's own structure (`AND (`,
/// `IN (`, `AS (`, `OVER (`, …) are grouping, not calls, and are not counted.
pub const MAX_NESTED_CALLS: usize = 12;

/// Words before `(` that group rather than call.
const GROUPING: &[Keyword] = &[
    Keyword::AND,
    Keyword::OR,
    Keyword::NOT,
    Keyword::IN,
    Keyword::AS,
    Keyword::OVER,
    Keyword::VALUES,
    Keyword::FILTER,
    Keyword::WITHIN,
    Keyword::ON,
    Keyword::USING,
    Keyword::WHEN,
    Keyword::THEN,
    Keyword::ELSE,
    Keyword::WHERE,
    Keyword::HAVING,
    Keyword::BY,
    Keyword::FROM,
    Keyword::JOIN,
    Keyword::SELECT,
    Keyword::WITH,
    Keyword::UNION,
    Keyword::INTERSECT,
    Keyword::EXCEPT,
    Keyword::ALL,
    Keyword::ANY,
    Keyword::SOME,
    Keyword::LATERAL,
    Keyword::IS,
    Keyword::LIKE,
    Keyword::ILIKE,
    Keyword::BETWEEN,
    Keyword::CASE,
    Keyword::RETURN,
    Keyword::SET,
    Keyword::INTO,
    Keyword::TABLE,
];

/// Keywords the parser reads as special forms when a parenthesis follows.
const SPECIAL_FORMS: &[Keyword] = &[
    Keyword::CAST,
    Keyword::TRY_CAST,
    Keyword::SAFE_CAST,
    Keyword::CONVERT,
    Keyword::TRY_CONVERT,
    Keyword::EXTRACT,
    Keyword::CEIL,
    Keyword::FLOOR,
    Keyword::POSITION,
    Keyword::SUBSTRING,
    Keyword::SUBSTR,
    Keyword::OVERLAY,
    Keyword::TRIM,
    Keyword::EXISTS,
    Keyword::ARRAY,
    Keyword::STRUCT,
    Keyword::MAP,
    Keyword::MATCH,
];

/// The deepest nesting of parentheses opened right after a word that calls (a function
/// name, a special form), and of those opened right after a special-form keyword.
#[doc(hidden)]
pub fn nested_calls(sql: &str) -> (usize, usize) {
    // Text the tokenizer refuses is refused by the parser too, in linear time.
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return (0, 0);
    };
    #[derive(Clone, Copy, PartialEq)]
    enum Before {
        Other,
        Call,
        Special,
    }
    let mut open: Vec<Before> = Vec::new();
    let (mut calls, mut special) = (0usize, 0usize);
    let (mut deepest_calls, mut deepest_special) = (0usize, 0usize);
    let mut before = Before::Other;
    let mut just_opened = false;
    for token in tokens {
        match &token {
            Token::Whitespace(_) => continue,
            Token::LParen => {
                open.push(before);
                if before != Before::Other {
                    calls += 1;
                    deepest_calls = deepest_calls.max(calls);
                }
                if before == Before::Special {
                    special += 1;
                    deepest_special = deepest_special.max(special);
                }
            }
            Token::RParen => match open.pop() {
                Some(Before::Special) => {
                    calls -= 1;
                    special -= 1;
                }
                Some(Before::Call) => calls -= 1,
                _ => {}
            },
            // `(SELECT …)`: a subquery nests like a call (planning 20 nested scalar
            // subqueries took over a minute).
            Token::Word(w)
                if matches!(w.keyword, Keyword::SELECT | Keyword::WITH)
                    && just_opened
                    && open.last() == Some(&Before::Other) =>
            {
                if let Some(top) = open.last_mut() {
                    *top = Before::Call;
                }
                calls += 1;
                deepest_calls = deepest_calls.max(calls);
            }
            _ => {}
        }
        just_opened = matches!(token, Token::LParen);
        before = match &token {
            Token::Word(w) if SPECIAL_FORMS.contains(&w.keyword) => Before::Special,
            Token::Word(w) if GROUPING.contains(&w.keyword) => Before::Other,
            Token::Word(_) => Before::Call,
            _ => Before::Other,
        };
    }
    (deepest_calls, deepest_special)
}

/// Depth and size of a statement, counted as it is walked; stops at the first excess.
struct Shape {
    limits: Limits,
    depth: usize,
    nodes: usize,
}

impl Shape {
    fn enter(&mut self) -> ControlFlow<QueryError> {
        self.depth += 1;
        self.nodes += 1;
        if self.depth > self.limits.max_expression_depth {
            return ControlFlow::Break(QueryError::new(
                ErrorKind::TooComplex,
                format!(
                    "statement is too complex: its expressions nest more than {} levels deep \
                     ([limits] max_expression_depth); write long OR chains as IN lists",
                    self.limits.max_expression_depth
                ),
            ));
        }
        if self.nodes > self.limits.max_expression_nodes {
            return ControlFlow::Break(QueryError::new(
                ErrorKind::TooComplex,
                format!(
                    "statement is too complex: more than {} expressions ([limits] max_expression_nodes)",
                    self.limits.max_expression_nodes
                ),
            ));
        }
        ControlFlow::Continue(())
    }

    fn leave(&mut self) -> ControlFlow<QueryError> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }
}

impl Visitor for Shape {
    type Break = QueryError;

    fn pre_visit_query(&mut self, _query: &Query) -> ControlFlow<QueryError> {
        self.enter()
    }
    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<QueryError> {
        self.leave()
    }
    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<QueryError> {
        self.enter()
    }
    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<QueryError> {
        self.leave()
    }
}
