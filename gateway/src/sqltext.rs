//! Lexical rewrites front-ends apply to SQL text before the planner reads it: the parts of
//! another client's SQL dialect that are about tokens, not grammar.
//!
//! - `?` placeholders (JDBC/ODBC, ADBC, Databricks positional parameters) become `$1, $2…`;
//! - `:name` markers (Databricks named parameters) become the `$n` of their name;
//! - `` `quoted` `` identifiers (Spark SQL, and Power BI's Databricks connector, quote every
//!   name with backticks) become `"quoted"`.
//!
//! Strings, quoted identifiers and comments are copied as they are; `::` casts are not
//! markers.

/// What to rewrite.
#[derive(Debug, Default, Clone, Copy)]
pub struct Rewrite<'a> {
    /// `?` → `$n`, numbered from 1 in order of appearance.
    pub question_marks: bool,
    /// `:name` → `$n` where `name` is the n-th entry (only names listed here are markers).
    pub named: &'a [String],
    /// `` `x` `` → `"x"`.
    pub backticks: bool,
    /// Strings escape with a backslash (`'O\'BRIEN'`, Databricks SQL), besides doubling.
    pub backslash_escapes: bool,
}

/// `sql` with the rewrites applied.
pub fn rewrite(sql: &str, what: Rewrite<'_>) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    let mut n = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\'' | '"' => {
                // Copy through the closing quote (a doubled quote stays inside).
                out.push(c);
                i += 1;
                while i < chars.len() {
                    out.push(chars[i]);
                    i += 1;
                    if what.backslash_escapes && chars[i - 1] == '\\' && i < chars.len() {
                        out.push(chars[i]);
                        i += 1;
                    } else if chars[i - 1] == c {
                        break;
                    }
                }
                continue;
            }
            // Databricks writes a marker with a quoted name: :`name`.
            '`' if !what.named.is_empty() && i > 0 && chars[i - 1] == ':' && out.ends_with(':') => {
                let end = (i + 1..chars.len()).find(|&j| chars[j] == '`');
                if let Some(end) = end {
                    let name: String = chars[i + 1..end].iter().collect();
                    if let Some(index) = what.named.iter().position(|p| p == &name) {
                        out.pop();
                        out.push('$');
                        out.push_str(&(index + 1).to_string());
                        i = end + 1;
                        continue;
                    }
                }
                out.push(c);
            }
            '`' if what.backticks => {
                out.push('"');
                i += 1;
                while i < chars.len() {
                    match chars[i] {
                        '`' if chars.get(i + 1) == Some(&'`') => {
                            out.push('`');
                            i += 2;
                        }
                        '`' => {
                            i += 1;
                            break;
                        }
                        '"' => {
                            out.push_str("\"\"");
                            i += 1;
                        }
                        other => {
                            out.push(other);
                            i += 1;
                        }
                    }
                }
                out.push('"');
                continue;
            }
            '-' if chars.get(i + 1) == Some(&'-') => {
                while i < chars.len() {
                    out.push(chars[i]);
                    i += 1;
                    if chars[i - 1] == '\n' {
                        break;
                    }
                }
                continue;
            }
            '/' if chars.get(i + 1) == Some(&'*') => {
                out.push_str("/*");
                i += 2;
                let mut last = ' ';
                while i < chars.len() {
                    let d = chars[i];
                    out.push(d);
                    i += 1;
                    if last == '*' && d == '/' {
                        break;
                    }
                    last = d;
                }
                continue;
            }
            '?' if what.question_marks => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            ':' if !what.named.is_empty()
                && chars
                    .get(i + 1)
                    .is_some_and(|c| c.is_alphabetic() || *c == '_')
                && (i == 0 || chars[i - 1] != ':') =>
            {
                let start = i + 1;
                let mut end = start;
                while end < chars.len() && (chars[end].is_alphanumeric() || chars[end] == '_') {
                    end += 1;
                }
                let name: String = chars[start..end].iter().collect();
                match what.named.iter().position(|p| p == &name) {
                    Some(index) => {
                        out.push('$');
                        out.push_str(&(index + 1).to_string());
                    }
                    None => {
                        out.push(':');
                        out.push_str(&name);
                    }
                }
                i = end;
                continue;
            }
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_marks_become_numbered_outside_strings_and_comments() {
        let what = Rewrite {
            question_marks: true,
            ..Default::default()
        };
        assert_eq!(
            rewrite(
                "SELECT ?, '?', \"a?\" FROM t WHERE x = ? -- ?\n AND y = ? /* ? */",
                what
            ),
            "SELECT $1, '?', \"a?\" FROM t WHERE x = $2 -- ?\n AND y = $3 /* ? */"
        );
        assert_eq!(rewrite("SELECT $1", what), "SELECT $1");
        assert_eq!(rewrite("SELECT 'it''s ?', ?", what), "SELECT 'it''s ?', $1");
    }

    #[test]
    fn backslash_escaped_quotes_stay_inside_their_string() {
        let names = vec!["a".to_string()];
        let what = Rewrite {
            named: &names,
            question_marks: true,
            backslash_escapes: true,
            ..Default::default()
        };
        assert_eq!(
            rewrite(r"SELECT 'O\'BRIEN ?', :a, ?, 'x\\', ?", what),
            r"SELECT 'O\'BRIEN ?', $1, $1, 'x\\', $2"
        );
    }

    #[test]
    fn named_markers_and_backticks() {
        let names = vec!["min_id".to_string(), "name".to_string()];
        let what = Rewrite {
            named: &names,
            backticks: true,
            ..Default::default()
        };
        assert_eq!(
            rewrite(
                "SELECT `a b`, x::int, ':name' FROM `tpch`.`nation` WHERE id > :min_id AND n = :name AND z = :other",
                what
            ),
            "SELECT \"a b\", x::int, ':name' FROM \"tpch\".\"nation\" WHERE id > $1 AND n = $2 AND z = :other"
        );
        assert_eq!(rewrite("SELECT `we``ird\"`", what), "SELECT \"we`ird\"\"\"");
        // Databricks' SQLAlchemy dialect quotes the marker's name.
        assert_eq!(
            rewrite(
                "SELECT :`name`, :`min_id`, :`nope`",
                Rewrite {
                    backticks: false,
                    ..what
                }
            ),
            "SELECT $2, $1, :`nope`"
        );
        // Comments with markers inside are left alone.
        assert_eq!(
            rewrite("/* :name */ SELECT :name", what),
            "/* :name */ SELECT $2"
        );
    }
}
