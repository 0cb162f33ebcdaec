//! Databricks SQL's own statements, for sessions of the Databricks paths (HS2, the
//! Statement Execution API): `SHOW CATALOGS | SCHEMAS | DATABASES | TABLES | TABLE EXTENDED
//! | VIEWS | COLUMNS | FUNCTIONS | TBLPROPERTIES | CREATE TABLE`, `DESCRIBE [TABLE] [EXTENDED | FORMATTED] t
//! [column]`, `DESCRIBE QUERY | SCHEMA | CATALOG | HISTORY`, `USE`, and `SET` / `RESET` of the
//! configuration parameters Databricks SQL has ([`conf`]).
//!
//! A SHOW is answered by a query over the session's information_schema, so grants filter
//! it as they filter every catalog view. DESCRIBE plans a read of the table — the one
//! authorization path: a table the session may not read is not found — and answers from
//! its columns (Spark's type names) and informational keys. USE sets the schema that
//! unqualified names resolve in. Result columns are the ones Databricks documents.

use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use spark::SparkDialect;

use crate::planner::{catalog, ErrorKind, QueryError};

/// What a Databricks statement asks.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Answered by this query (PostgreSQL syntax, over information_schema).
    Query(String),
    Describe(Describe),
    /// `USE [SCHEMA] s`: unqualified names resolve in `s`.
    Use(String),
    /// `USE CATALOG sluice`: the one catalog, already in use.
    UseCatalog,
    /// `SHOW TABLES | VIEWS IN s`: answered by the query, once the schema (`literal`, the
    /// name as a SQL string) is known to exist.
    InSchema {
        literal: String,
        query: String,
    },
    /// `SET` (all), `SET key`, `SET key = value`, `SET TIME ZONE …`: answered with the
    /// (key, value) rows Spark answers with.
    Set {
        key: Option<String>,
        value: Option<String>,
    },
    /// `RESET [key]`.
    Reset(Option<String>),
    /// `DESCRIBE QUERY q` (or `DESCRIBE SELECT …`): the columns the query answers.
    DescribeQuery(String),
    /// `DESCRIBE SCHEMA | DATABASE [EXTENDED] s`.
    DescribeSchema(String),
    /// `SHOW [USER | SYSTEM | ALL] FUNCTIONS [[LIKE] pattern]`: the functions a statement may
    /// call, filtered by the condition on column `function`.
    Functions(Option<String>),
    /// `SHOW TBLPROPERTIES t`: a table's properties (sluice keeps none).
    TblProperties(Vec<String>),
    /// `DESCRIBE HISTORY t [LIMIT n]`: a Delta table's commits, newest first.
    History {
        table: Vec<String>,
        limit: usize,
    },
}

/// The most commits DESCRIBE HISTORY lists, with or without a LIMIT (each is one log file
/// read, and its answer one VALUES row).
pub const HISTORY_LIMIT: usize = 1000;

/// `DESCRIBE` and `SHOW COLUMNS`: answered from a table's columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Describe {
    /// `schema.table` or `table` (a catalog part is checked and dropped).
    pub table: Vec<String>,
    /// `EXTENDED` / `FORMATTED`: the detailed table information and the keys follow.
    pub extended: bool,
    /// `DESCRIBE t c`: that column's details.
    pub column: Option<String>,
    /// `SHOW COLUMNS`: the names only.
    pub names_only: bool,
    /// `SHOW CREATE TABLE`: the statement that would create it.
    pub create: bool,
}

/// Whether `sql` may be one of the statements above: its first word, past comments
/// (most statements are queries, and pay nothing more than this look).
pub fn may_be_command(sql: &str) -> bool {
    matches!(
        first_word(sql).to_ascii_uppercase().as_str(),
        "SHOW" | "DESCRIBE" | "DESC" | "USE" | "SET" | "RESET"
    )
}

/// The Databricks statement `sql` is, if it is one of those above (None: plan it as SQL).
pub fn command(sql: &str) -> Result<Option<Command>, QueryError> {
    if !may_be_command(sql) {
        return Ok(None);
    }
    match first_word(sql).to_ascii_uppercase().as_str() {
        "SET" => return set(sql).map(Some),
        "DESCRIBE" | "DESC" => {
            let rest = after_first_word(sql);
            let second = first_word(rest).to_ascii_uppercase();
            if second == "QUERY" {
                return Ok(Some(Command::DescribeQuery(
                    after_first_word(rest).to_string(),
                )));
            }
            if matches!(second.as_str(), "SELECT" | "WITH" | "VALUES") {
                return Ok(Some(Command::DescribeQuery(rest.to_string())));
            }
        }
        "RESET" => {
            let key = after_first_word(sql);
            return Ok(Some(Command::Reset(
                (!key.is_empty()).then(|| key.trim_matches('`').to_string()),
            )));
        }
        _ => {}
    }
    let dialect = SparkDialect;
    let Ok(mut p) = Parser::new(&dialect).try_with_sql(sql) else {
        return Ok(None);
    };
    let command = if p.parse_keyword(Keyword::SHOW) {
        match show(&mut p)? {
            Some(c) => c,
            None => return Ok(None),
        }
    } else if p
        .parse_one_of_keywords(&[Keyword::DESCRIBE, Keyword::DESC])
        .is_some()
    {
        describe(&mut p)?
    } else if p.parse_keyword(Keyword::USE) {
        let _ = p.parse_one_of_keywords(&[Keyword::SCHEMA, Keyword::DATABASE]);
        if p.parse_keyword(Keyword::CATALOG) {
            let catalog = name(&mut p)?;
            match catalog.as_slice() {
                [one] => check_catalog(Some(one))?,
                _ => return Err(syntax("USE CATALOG names a catalog")),
            }
            Command::UseCatalog
        } else {
            let mut schema = name(&mut p)?;
            if schema.len() == 2 {
                check_catalog(schema.first().map(String::as_str))?;
                schema.remove(0);
            }
            match schema.as_slice() {
                [one] => Command::Use(one.clone()),
                _ => return Err(syntax("USE names a schema: USE [SCHEMA] [catalog.]schema")),
            }
        }
    } else {
        return Ok(None);
    };
    while p.consume_token(&Token::SemiColon) {}
    let next = p.peek_token().token;
    if next != Token::EOF {
        return Err(syntax(&format!(
            "Expected: end of statement, found: {next}"
        )));
    }
    Ok(Some(command))
}

/// The text after the first word, without the statement's end (`;`).
fn after_first_word(sql: &str) -> &str {
    let word = first_word(sql);
    let start = sql.find(word).map_or(sql.len(), |i| i + word.len());
    sql[start..].trim().trim_end_matches(';').trim()
}

/// Spark's `SET` forms: `SET [-v]`, `SET key`, `SET key = value` (the value is the rest of
/// the text, unquoted), `SET TIME ZONE 'zone' | LOCAL`.
fn set(sql: &str) -> Result<Command, QueryError> {
    let rest = after_first_word(sql);
    if rest.is_empty() || rest == "-v" {
        return Ok(Command::Set {
            key: None,
            value: None,
        });
    }
    let unquote = |v: &str| {
        let v = v.trim();
        for q in ['\'', '"', '`'] {
            if let Some(inner) = v.strip_prefix(q).and_then(|v| v.strip_suffix(q)) {
                return inner.to_string();
            }
        }
        v.to_string()
    };
    let words: Vec<&str> = rest.split_whitespace().collect();
    if words.len() >= 2
        && words[0].eq_ignore_ascii_case("TIME")
        && words[1].eq_ignore_ascii_case("ZONE")
    {
        return Ok(Command::Set {
            key: Some(TIME_ZONE.into()),
            value: Some(unquote(&words[2..].join(" "))),
        });
    }
    let (key, value) = match rest.split_once('=') {
        Some((k, v)) => (unquote(k), Some(unquote(v))),
        None => (unquote(rest), None),
    };
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(syntax("SET key = value, SET key, or SET"));
    }
    Ok(Command::Set {
        key: Some(key),
        value,
    })
}

/// Spark's name of the session time zone.
pub const TIME_ZONE: &str = "spark.sql.session.timeZone";

/// The configuration parameters a Databricks SQL session has, by Databricks' name and
/// Spark's, with the value sluice runs with.
const CONFS: &[(&str, &str, &str)] = &[
    ("ANSI_MODE", "spark.sql.ansi.enabled", "true"),
    ("TIMEZONE", TIME_ZONE, "UTC"),
    (
        "LEGACY_TIME_PARSER_POLICY",
        "spark.sql.legacy.timeParserPolicy",
        "EXCEPTION",
    ),
    (
        "USE_CACHED_RESULT",
        "spark.databricks.sql.useCachedResult",
        "true",
    ),
    ("STATEMENT_TIMEOUT", "statement_timeout", "0"),
];

/// The session setting a configuration parameter is kept under and its default.
pub fn conf_default(key: &str) -> Option<(&'static str, &'static str)> {
    CONFS
        .iter()
        .find(|(name, spark, _)| key.eq_ignore_ascii_case(name) || key == *spark)
        .map(|(_, spark, default)| (*spark, *default))
}

/// sluice's session settings a Databricks session may set too (`SET search_path = tpch`).
const SLUICE_SETTINGS: &[&str] = &[
    "search_path",
    crate::session::WAREHOUSE_SETTING,
    "application_name",
];

/// Every configuration parameter, as `SET` lists them: (key, setting, default).
pub fn confs() -> impl Iterator<Item = (&'static str, &'static str)> {
    CONFS.iter().map(|(_, spark, default)| (*spark, *default))
}

/// What `SET key = value` stores (setting, value), or why it cannot: sluice answers in
/// ANSI mode and in UTC only; `STATEMENT_TIMEOUT` (seconds) is the session's
/// `statement_timeout`; Spark's other `spark.*` settings are kept and reported, and do not
/// change what sluice does; anything else is not a configuration parameter here.
pub fn conf(key: &str, value: &str) -> Result<Vec<(String, String)>, QueryError> {
    let refuse = |why: String| Err(QueryError::new(ErrorKind::NotSupported, why));
    let Some((setting, _)) = conf_default(key) else {
        if key.starts_with("spark.") {
            return Ok(vec![(key.to_string(), value.to_string())]);
        }
        // sluice's own session settings, as the pg front-end sets them.
        if SLUICE_SETTINGS.iter().any(|s| key.eq_ignore_ascii_case(s)) {
            return Ok(vec![(key.to_ascii_lowercase(), value.to_string())]);
        }
        return Err(QueryError::new(
            ErrorKind::UndefinedObject,
            format!(
                "[CONFIG_NOT_AVAILABLE] Configuration {key} is not available: set ANSI_MODE, \
                 TIMEZONE, STATEMENT_TIMEOUT, USE_CACHED_RESULT, LEGACY_TIME_PARSER_POLICY, \
                 a spark.* setting, search_path or warehouse"
            ),
        ));
    };
    match setting {
        "spark.sql.ansi.enabled" if !value.eq_ignore_ascii_case("true") => refuse(format!(
            "{key} = {value}: sluice answers Databricks SQL in ANSI mode only"
        )),
        TIME_ZONE
            if !["UTC", "Etc/UTC", "GMT", "Z", "+00:00", "LOCAL"]
                .iter()
                .any(|z| value.eq_ignore_ascii_case(z)) =>
        {
            refuse(format!("{key} = {value}: sluice sessions run in UTC only"))
        }
        "statement_timeout" => match value.parse::<u64>() {
            Ok(seconds) => Ok(vec![(setting.into(), format!("{seconds}s"))]),
            Err(_) => Err(QueryError::new(
                ErrorKind::InvalidValue,
                format!("{key} takes a number of seconds, not {value:?}"),
            )),
        },
        _ => Ok(vec![(setting.into(), value.to_string())]),
    }
}

/// The first word of `sql`, past blanks and comments (tools open statements with them).
fn first_word(mut sql: &str) -> &str {
    loop {
        sql = sql.trim_start();
        if let Some(rest) = sql.strip_prefix("--") {
            sql = rest.split_once('\n').map_or("", |(_, after)| after);
        } else if let Some(rest) = sql.strip_prefix("/*") {
            sql = rest.split_once("*/").map_or("", |(_, after)| after);
        } else {
            let end = sql
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(sql.len());
            return &sql[..end];
        }
    }
}

fn show(p: &mut Parser) -> Result<Option<Command>, QueryError> {
    let Token::Word(word) = p.peek_token().token else {
        return Ok(None);
    };
    let what = word.value.to_ascii_uppercase();
    let command = match what.as_str() {
        "CATALOGS" => {
            p.next_token();
            let filter = pattern(p, "\"catalog\"")?;
            Command::Query(format!(
                "SELECT \"catalog\" FROM (SELECT {} AS \"catalog\") c{}",
                literal(catalog()),
                filter.map(|f| format!(" WHERE {f}")).unwrap_or_default()
            ))
        }
        "SCHEMAS" | "DATABASES" | "NAMESPACES" => {
            p.next_token();
            if p.parse_one_of_keywords(&[Keyword::FROM, Keyword::IN])
                .is_some()
            {
                let catalog = name(p)?;
                check_catalog(catalog.first().map(String::as_str))?;
            }
            let filter = pattern(p, "schema_name")?;
            Command::Query(format!(
                "SELECT schema_name AS \"databaseName\" FROM information_schema.schemata \
                 WHERE schema_name NOT IN ('pg_catalog', 'pg_toast'){} ORDER BY 1",
                filter.map(|f| format!(" AND {f}")).unwrap_or_default()
            ))
        }
        "TABLES" | "VIEWS" => {
            p.next_token();
            let named = p.peek_token().token;
            let schema = in_schema(p)?;
            let filter = pattern(p, "table_name")?;
            let (columns, views) = if what == "TABLES" {
                (
                    "table_schema AS \"database\", table_name AS \"tableName\", \
                     false AS \"isTemporary\"",
                    "",
                )
            } else {
                (
                    "table_schema AS \"namespace\", table_name AS \"viewName\", \
                     false AS \"isTemporary\", false AS \"isMaterialized\"",
                    " AND table_type = 'VIEW'",
                )
            };
            let query = format!(
                "SELECT {columns} FROM information_schema.tables WHERE table_schema = {schema}\
                 {views}{} ORDER BY 2",
                filter.map(|f| format!(" AND {f}")).unwrap_or_default()
            );
            in_schema_command(&named, schema, query)
        }
        "COLUMNS" => {
            p.next_token();
            if p.parse_one_of_keywords(&[Keyword::FROM, Keyword::IN])
                .is_none()
            {
                return Err(syntax(
                    "SHOW COLUMNS {IN | FROM} table [{IN | FROM} schema]",
                ));
            }
            let mut table = name(p)?;
            if p.parse_one_of_keywords(&[Keyword::FROM, Keyword::IN])
                .is_some()
            {
                let schema = name(p)?;
                table = schema.into_iter().chain(table.pop()).collect();
            }
            Command::Describe(Describe {
                table: drop_catalog(table)?,
                extended: false,
                column: None,
                names_only: true,
                create: false,
            })
        }
        "FUNCTIONS" | "USER" | "SYSTEM" | "ALL" => {
            p.next_token();
            if what != "FUNCTIONS"
                && !matches!(p.next_token().token, Token::Word(w) if w.value.eq_ignore_ascii_case("FUNCTIONS"))
            {
                return Err(syntax(
                    "SHOW [USER | SYSTEM | ALL] FUNCTIONS [[LIKE] pattern]",
                ));
            }
            Command::Functions(pattern(p, "\"function\"")?)
        }
        "TBLPROPERTIES" => {
            p.next_token();
            Command::TblProperties(drop_catalog(name(p)?)?)
        }
        "TABLE" => {
            // SHOW TABLE EXTENDED [IN schema] LIKE 'pattern': what dbt-databricks lists
            // relations and their columns with (`docs generate`).
            p.next_token();
            if !p.parse_keyword(Keyword::EXTENDED) {
                return Err(syntax("SHOW TABLE EXTENDED [IN schema] LIKE 'pattern'"));
            }
            let named = p.peek_token().token;
            let schema = in_schema(p)?;
            let Some(filter) = pattern(p, "t.table_name")? else {
                return Err(syntax("SHOW TABLE EXTENDED [IN schema] LIKE 'pattern'"));
            };
            if p.parse_keyword(Keyword::PARTITION) {
                return Err(QueryError::new(
                    ErrorKind::NotSupported,
                    "SHOW TABLE EXTENDED … PARTITION: sluice's tables have no partitions to show",
                ));
            }
            let query = show_table_extended(&schema, &filter);
            in_schema_command(&named, schema, query)
        }
        "CREATE" => {
            p.next_token();
            if !p.parse_keyword(Keyword::TABLE) {
                return Err(syntax("SHOW CREATE TABLE table"));
            }
            let table = drop_catalog(name(p)?)?;
            if p.parse_keyword(Keyword::AS) {
                return Err(QueryError::new(
                    ErrorKind::NotSupported,
                    "SHOW CREATE TABLE … AS SERDE: sluice's tables are not Hive SerDe tables",
                ));
            }
            Command::Describe(Describe {
                table,
                extended: false,
                column: None,
                names_only: false,
                create: true,
            })
        }
        "PARTITIONS" | "GRANTS" | "USERS" | "GROUPS" | "SHARES" | "PROVIDERS" | "RECIPIENTS"
        | "VOLUMES" | "CONNECTIONS" => {
            return Err(QueryError::new(
                ErrorKind::NotSupported,
                format!("SHOW {what} is not supported by sluice yet"),
            ))
        }
        // SHOW <setting>: the session's settings.
        _ => return Ok(None),
    };
    Ok(Some(command))
}

fn describe(p: &mut Parser) -> Result<Command, QueryError> {
    if p.parse_one_of_keywords(&[Keyword::SCHEMA, Keyword::DATABASE])
        .is_some()
    {
        let _ = p.parse_keyword(Keyword::EXTENDED);
        let mut schema = name(p)?;
        if schema.len() == 2 {
            check_catalog(schema.first().map(String::as_str))?;
            schema.remove(0);
        }
        return match schema.as_slice() {
            [one] => Ok(Command::DescribeSchema(one.clone())),
            _ => Err(syntax("DESCRIBE SCHEMA [catalog.]schema")),
        };
    }
    if p.parse_keyword(Keyword::CATALOG) {
        let _ = p.parse_keyword(Keyword::EXTENDED);
        let named = name(p)?;
        match named.as_slice() {
            [one] => check_catalog(Some(one))?,
            _ => return Err(syntax("DESCRIBE CATALOG catalog")),
        }
        return Ok(Command::Query(format!(
            "SELECT * FROM (VALUES ('Catalog Name', {}), ('Comment', '')) AS d(info_name, info_value)",
            literal(catalog())
        )));
    }
    if p.parse_keyword(Keyword::HISTORY) {
        let table = drop_catalog(name(p)?)?;
        let limit = if p.parse_keyword(Keyword::LIMIT) {
            match p.next_token().token {
                // Each commit is a log file read: a LIMIT asks for fewer, never more.
                Token::Number(n, _) => n
                    .parse::<usize>()
                    .map_err(|_| syntax("DESCRIBE HISTORY t LIMIT takes a whole number"))?
                    .min(HISTORY_LIMIT),
                _ => return Err(syntax("DESCRIBE HISTORY t LIMIT takes a whole number")),
            }
        } else {
            HISTORY_LIMIT
        };
        return Ok(Command::History { table, limit });
    }
    if let Some(k) = p.parse_one_of_keywords(&[Keyword::FUNCTION, Keyword::VOLUME, Keyword::DETAIL])
    {
        return Err(QueryError::new(
            ErrorKind::NotSupported,
            format!("DESCRIBE {k:?} is not supported by sluice yet"),
        ));
    }
    let _ = p.parse_keyword(Keyword::TABLE);
    let extended = p
        .parse_one_of_keywords(&[Keyword::EXTENDED, Keyword::FORMATTED])
        .is_some();
    let _ = p.parse_keyword(Keyword::TABLE);
    let table = drop_catalog(name(p)?)?;
    let column = match p.peek_token().token {
        Token::Word(_) => Some(name(p)?.join(".")),
        _ => None,
    };
    Ok(Command::Describe(Describe {
        table,
        extended,
        column,
        names_only: false,
        create: false,
    }))
}

/// A SHOW answered by `query` over `schema`: when the statement named the schema (`named`
/// is the token after SHOW's object word), the schema must exist ([`Command::InSchema`]).
fn in_schema_command(named: &Token, schema: String, query: String) -> Command {
    if matches!(named, Token::Word(w) if matches!(w.keyword, Keyword::IN | Keyword::FROM)) {
        Command::InSchema {
            literal: schema,
            query,
        }
    } else {
        Command::Query(query)
    }
}

/// `{IN | FROM} [catalog.]schema`, as a SQL value (else the session's current schema).
fn in_schema(p: &mut Parser) -> Result<String, QueryError> {
    if p.parse_one_of_keywords(&[Keyword::FROM, Keyword::IN])
        .is_none()
    {
        return Ok("current_schema()".into());
    }
    match name(p)?.as_slice() {
        [schema] => Ok(literal(schema)),
        [catalog, schema] => {
            check_catalog(Some(catalog))?;
            Ok(literal(schema))
        }
        _ => Err(syntax("name a schema: [catalog.]schema")),
    }
}

/// SHOW TABLE EXTENDED's rows (database, tableName, isTemporary, information): the
/// information is Spark's text block, its `Schema:` the tree Spark prints (` |-- name:
/// type (nullable = …)`, Spark's type names), which dbt-databricks reads the columns from.
fn show_table_extended(schema: &str, filter: &str) -> String {
    let catalog = literal(catalog());
    format!(
        "SELECT t.table_schema AS \"database\", t.table_name AS \"tableName\", \
         false AS \"isTemporary\", \
         'Catalog: ' || {catalog} || chr(10) || 'Database: ' || t.table_schema || chr(10) || \
         'Table: ' || t.table_name || chr(10) || 'Owner: ' || coalesce(s.schema_owner, '') || \
         chr(10) || 'Type: ' || CASE WHEN t.table_type = 'VIEW' THEN 'VIEW' ELSE 'EXTERNAL' END || \
         chr(10) || 'Schema: root' || chr(10) || \
         string_agg(' |-- ' || c.column_name || ': ' || {tree_type} || ' (nullable = ' || \
                    CASE WHEN c.is_nullable = 'YES' THEN 'true' ELSE 'false' END || ')', \
                    chr(10) ORDER BY c.ordinal_position) || chr(10) AS information \
         FROM information_schema.tables t \
         JOIN information_schema.columns c \
           ON c.table_schema = t.table_schema AND c.table_name = t.table_name \
         LEFT JOIN information_schema.schemata s ON s.schema_name = t.table_schema \
         WHERE t.table_schema = {schema} AND {filter} \
         GROUP BY t.table_schema, t.table_name, t.table_type, s.schema_owner ORDER BY 2",
        tree_type = "CASE c.udt_name WHEN 'int2' THEN 'short' WHEN 'int4' THEN 'integer' \
             WHEN 'int8' THEN 'long' WHEN 'float4' THEN 'float' WHEN 'float8' THEN 'double' \
             WHEN 'bool' THEN 'boolean' WHEN 'bytea' THEN 'binary' \
             WHEN 'timestamp' THEN 'timestamp_ntz' WHEN 'timestamptz' THEN 'timestamp' \
             WHEN 'numeric' THEN 'decimal(' || CAST(c.numeric_precision AS text) || ',' || \
                  CAST(c.numeric_scale AS text) || ')' \
             WHEN 'text' THEN 'string' WHEN 'varchar' THEN 'string' WHEN 'bpchar' THEN 'string' \
             ELSE c.udt_name END",
    )
}

/// `[LIKE] 'pattern'` as a condition on `column`: Spark's patterns, where `*` is any
/// text and `|` separates alternatives, matched whole and regardless of case.
fn pattern(p: &mut Parser, column: &str) -> Result<Option<String>, QueryError> {
    let like = p.parse_keyword(Keyword::LIKE);
    let text = match p.peek_token().token {
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => {
            p.next_token();
            s
        }
        _ if like => return Err(syntax("LIKE takes a quoted pattern")),
        _ => return Ok(None),
    };
    let alternatives: Vec<String> = text
        .trim()
        .split('|')
        .map(|alternative| alternative.replace('*', ".*"))
        .collect();
    let regex = format!("^(?:{})$", alternatives.join("|"));
    // Refused here, clearly, rather than when the catalog query runs.
    if let Err(e) = regex::RegexBuilder::new(&regex).size_limit(1 << 20).build() {
        let reason = e.to_string();
        let reason = reason.lines().last().unwrap_or("not a regular expression");
        return Err(QueryError::new(
            ErrorKind::InvalidValue,
            format!("invalid pattern {text:?}: {reason}"),
        ));
    }
    Ok(Some(format!("{column} ~* {}", literal(&regex))))
}

/// A dotted name; identifiers read regardless of case, as Spark reads them.
fn name(p: &mut Parser) -> Result<Vec<String>, QueryError> {
    let name = p
        .parse_object_name(false)
        .map_err(|e| syntax(&e.to_string()))?;
    Ok(name
        .0
        .iter()
        .filter_map(|part| part.as_ident())
        .map(|ident| ident.value.to_lowercase())
        .collect())
}

/// `catalog.schema.table` → `schema.table`, the catalog checked.
fn drop_catalog(mut name: Vec<String>) -> Result<Vec<String>, QueryError> {
    if name.len() == 3 {
        check_catalog(name.first().map(String::as_str))?;
        name.remove(0);
    }
    if name.is_empty() || name.len() > 2 {
        return Err(syntax("name a table: [[catalog.]schema.]table"));
    }
    Ok(name)
}

fn check_catalog(named: Option<&str>) -> Result<(), QueryError> {
    match named {
        Some(c) if !spark::is_catalog(c, catalog()) => Err(QueryError::new(
            ErrorKind::UndefinedObject,
            format!(
                "[NO_SUCH_CATALOG_EXCEPTION] catalog {c:?} not found (the catalog is {:?})",
                catalog()
            ),
        )),
        _ => Ok(()),
    }
}

fn syntax(message: &str) -> QueryError {
    QueryError::new(ErrorKind::Syntax, message.to_string())
}

/// A SQL string literal of `text`.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A quoted SQL identifier.
pub fn ident(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(sql: &str) -> String {
        match command(sql).expect("recognized") {
            Some(Command::Query(q) | Command::InSchema { query: q, .. }) => q,
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn show_forms_become_catalog_queries() {
        assert!(query("SHOW SCHEMAS").contains("AS \"databaseName\""));
        assert!(query("show databases in `sluice` like 'tp*|x'")
            .contains("schema_name ~* '^(?:tp.*|x)$'"));
        let tables = query("SHOW TABLES FROM `sluice`.`tpch`");
        assert!(tables.contains("table_schema = 'tpch'"), "{tables}");
        assert!(tables.contains("\"tableName\""), "{tables}");
        assert!(query("SHOW TABLES").contains("table_schema = current_schema()"));
        assert!(query("SHOW VIEWS IN tpch LIKE 'n*'").contains("table_type = 'VIEW'"));
        // A pattern cannot leave its literal.
        assert!(query("SHOW TABLES LIKE 'a''; DROP'").contains("'^(?:a''; DROP)$'"));
        assert_eq!(command("SHOW search_path").unwrap(), None);
        assert_eq!(command("SELECT 1").unwrap(), None);
        assert!(query("/* dbt */ -- x\n SHOW SCHEMAS").contains("databaseName"));
    }

    #[test]
    fn describe_and_use() {
        assert_eq!(
            command("DESCRIBE TABLE EXTENDED `sluice`.`tpch`.`nation`").unwrap(),
            Some(Command::Describe(Describe {
                table: vec!["tpch".into(), "nation".into()],
                extended: true,
                column: None,
                names_only: false,
                create: false,
            }))
        );
        let Some(Command::Describe(d)) = command("desc nation n_name").unwrap() else {
            panic!("describe")
        };
        assert_eq!(d.column.as_deref(), Some("n_name"));
        let Some(Command::Describe(d)) = command("SHOW COLUMNS IN nation IN tpch").unwrap() else {
            panic!("show columns")
        };
        assert_eq!(
            (d.table, d.names_only),
            (vec!["tpch".into(), "nation".into()], true)
        );
        assert_eq!(
            command("USE `tpch`").unwrap(),
            Some(Command::Use("tpch".into()))
        );
        assert_eq!(
            command("USE SCHEMA sluice.tpch;").unwrap(),
            Some(Command::Use("tpch".into()))
        );
        let e = command("USE CATALOG hive").unwrap_err();
        assert_eq!(e.kind, ErrorKind::UndefinedObject);
        let e = command("DESCRIBE FUNCTION f").unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotSupported);
        assert!(matches!(
            command("SHOW TABLE EXTENDED IN tpch LIKE '*'").unwrap(),
            Some(Command::InSchema { .. })
        ));
        assert_eq!(
            command("SHOW TABLE EXTENDED IN tpch LIKE 'n*' PARTITION (a = 1)")
                .unwrap_err()
                .kind,
            ErrorKind::NotSupported
        );
        assert_eq!(
            command("SHOW TABLE EXTENDED IN tpch").unwrap_err().kind,
            ErrorKind::Syntax
        );
        assert_eq!(
            command("DESCRIBE DETAIL tpch.nation").unwrap_err().kind,
            ErrorKind::NotSupported
        );
        let e = command("SHOW TABLES LIKE '['").unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidValue);
        let deep = format!(
            "SHOW TABLES LIKE '{}b{}'",
            "(a|".repeat(3000),
            ")".repeat(3000)
        );
        assert_eq!(command(&deep).unwrap_err().kind, ErrorKind::InvalidValue);
        let Some(Command::Describe(d)) = command("SHOW CREATE TABLE main.tpch.nation").unwrap()
        else {
            panic!("show create table")
        };
        assert!(d.create && d.table == ["tpch", "nation"]);
        let e = command("SHOW CREATE TABLE tpch.nation AS SERDE").unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotSupported);
        assert_eq!(
            command("DESCRIBE HISTORY main.lake.events LIMIT 2").unwrap(),
            Some(Command::History {
                table: vec!["lake".into(), "events".into()],
                limit: 2
            })
        );
        assert!(matches!(
            command("DESC HISTORY events").unwrap(),
            Some(Command::History {
                limit: HISTORY_LIMIT,
                ..
            })
        ));
        assert!(matches!(
            command("DESCRIBE HISTORY t LIMIT 99999999999").unwrap(),
            Some(Command::History {
                limit: HISTORY_LIMIT,
                ..
            })
        ));
        let e = command("DESCRIBE HISTORY t LIMIT -1").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Syntax);
        assert!(matches!(
            command("SHOW USER FUNCTIONS LIKE 'a*'"),
            Ok(Some(Command::Functions(Some(_))))
        ));
        assert!(matches!(
            command("DESCRIBE QUERY SELECT 1"),
            Ok(Some(Command::DescribeQuery(q))) if q == "SELECT 1"
        ));
        assert!(matches!(
            command("DESC DATABASE EXTENDED sluice.tpch"),
            Ok(Some(Command::DescribeSchema(s))) if s == "tpch"
        ));
        assert_eq!(
            command("SHOW TABLES extra junk").unwrap_err().kind,
            ErrorKind::Syntax
        );
    }

    #[test]
    fn set_forms_as_spark_reads_them() {
        let set = |sql: &str| match command(sql).expect("recognized") {
            Some(Command::Set { key, value }) => (key, value),
            other => panic!("{sql}: {other:?}"),
        };
        assert_eq!(set("SET"), (None, None));
        assert_eq!(set("set -v"), (None, None));
        assert_eq!(
            set("SET spark.sql.ansi.enabled"),
            (Some("spark.sql.ansi.enabled".into()), None)
        );
        assert_eq!(
            set("SET `spark.sql.session.timeZone` = 'UTC';"),
            (Some(TIME_ZONE.into()), Some("UTC".into()))
        );
        assert_eq!(
            set("SET TIME ZONE 'Etc/UTC'"),
            (Some(TIME_ZONE.into()), Some("Etc/UTC".into()))
        );
        assert!(matches!(command("RESET"), Ok(Some(Command::Reset(None)))));
        assert!(command("SET a b = c").is_err());
    }

    #[test]
    fn confs_map_to_what_sluice_does() {
        assert_eq!(
            conf("STATEMENT_TIMEOUT", "30").unwrap(),
            vec![("statement_timeout".to_string(), "30s".to_string())]
        );
        assert_eq!(
            conf("spark.sql.shuffle.partitions", "4").unwrap(),
            vec![("spark.sql.shuffle.partitions".to_string(), "4".to_string())]
        );
        assert!(conf("ansi_mode", "TRUE").is_ok());
        assert_eq!(
            conf("ANSI_MODE", "false").unwrap_err().kind,
            ErrorKind::NotSupported
        );
        assert_eq!(
            conf("TIMEZONE", "Europe/Paris").unwrap_err().kind,
            ErrorKind::NotSupported
        );
        assert_eq!(
            conf("STATEMENT_TIMEOUT", "soon").unwrap_err().kind,
            ErrorKind::InvalidValue
        );
        assert_eq!(
            conf("work_mem", "1GB").unwrap_err().kind,
            ErrorKind::UndefinedObject
        );
    }
}
