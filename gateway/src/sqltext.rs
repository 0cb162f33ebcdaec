//! Lexical rewrites front-ends apply to SQL text before the planner reads it: the parts of
//! another client's SQL dialect that are about tokens, not grammar.
//!
//! - `?` placeholders (JDBC/ODBC, ADBC, Databricks positional parameters) become `$1, $2…`;
//! - `:name` markers (Databricks named parameters) become the `$n` of their name;
//! - `` `quoted` `` identifiers (Spark SQL, and Power BI's Databricks connector, quote every
//!   name with backticks) become `"quoted"`;
//! - with Databricks SQL's backslash escapes: raw strings (`r'C:\dir'`) become plain ones
//!   with their backslashes escaped, and `\uXXXX` / `\UXXXXXXXX` escapes become the character.
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

/// Copy the string starting at `chars[start]` (its quote) through its closing quote, with
/// backslash escapes kept and `\uXXXX` / `\UXXXXXXXX` written as the character (escaped
/// again where it is a quote or a backslash); the index after it.
fn copy_escaped_string(chars: &[char], start: usize, out: &mut String) -> usize {
    let quote = chars[start];
    out.push(quote);
    let mut i = start + 1;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' && i + 1 < chars.len() {
            let digits = match chars[i + 1] {
                'u' => 4,
                'U' => 8,
                _ => 0,
            };
            let hex: String = chars
                .get(i + 2..i + 2 + digits)
                .map(|h| h.iter().collect())
                .unwrap_or_default();
            let unicode = (digits > 0 && hex.len() == digits)
                .then(|| u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32))
                .flatten();
            match unicode {
                Some(u) => {
                    if u == quote || u == '\\' {
                        out.push('\\');
                    }
                    out.push(u);
                    i += 2 + digits;
                }
                None => {
                    out.push(c);
                    out.push(chars[i + 1]);
                    i += 2;
                }
            }
            continue;
        }
        out.push(c);
        i += 1;
        if c == quote {
            return i;
        }
    }
    i
}

/// `sql` with the rewrites applied.
pub fn rewrite(sql: &str, what: Rewrite<'_>) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let chars: Vec<char> = sql.chars().collect();
    let mut i = 0;
    let mut n = 0;
    while i < chars.len() {
        let c = chars[i];
        // `r'…'`: a raw string (no escapes), as the plain string with the same value.
        let word_start = i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if what.backslash_escapes
            && word_start
            && matches!(c, 'r' | 'R')
            && matches!(chars.get(i + 1), Some('\'' | '"'))
        {
            let quote = chars[i + 1];
            if let Some(len) = chars[i + 2..].iter().position(|&d| d == quote) {
                out.push(quote);
                for &d in &chars[i + 2..i + 2 + len] {
                    if d == '\\' {
                        out.push('\\');
                    }
                    out.push(d);
                }
                out.push(quote);
                i += len + 3;
                continue;
            }
        }
        match c {
            '\'' | '"' if what.backslash_escapes => {
                i = copy_escaped_string(&chars, i, &mut out);
                continue;
            }
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
    fn raw_strings_and_unicode_escapes_become_plain_strings() {
        let databricks = Rewrite {
            backslash_escapes: true,
            ..Default::default()
        };
        assert_eq!(
            rewrite(r#"SELECT r'a\nb', R"C:\x""#, databricks),
            r#"SELECT 'a\\nb', "C:\\x""#
        );
        assert_eq!(
            rewrite(r"SELECT '\u0041BC', '\u0027'", databricks),
            r"SELECT 'ABC', '\''"
        );
        // A name ending in r before a string is not a raw string; a bad escape stays.
        assert_eq!(
            rewrite(r"SELECT chr'x', '\u00'", databricks),
            r"SELECT chr'x', '\u00'"
        );
        assert_eq!(rewrite("SELECT r'x'", Rewrite::default()), "SELECT r'x'");
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
