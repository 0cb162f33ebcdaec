//! Fuzz target: SQL text through parse → rewrite → plan → optimize → physical plan, the
//! path every statement takes in the gateway. Statements come from a grammar (nesting as
//! deep as the limits allow, and deeper; every construct the rewrites touch) or are
//! mutations of statements BI tools send. Planning runs on a thread with the gateway's
//! stack ([`planner::limits::THREAD_STACK`]), as it does in the gateway.

use std::sync::Arc;

use fuzz::{Rng, StdRng};

use planner::catalog::{TableDef, TableFormat};
use planner::ddl::Managed;
use planner::session::{Access, SessionInfo};
use planner::{Limits, Planner};

/// Statements of the kind BI tools and drivers send (catalog queries, PostgreSQL syntax).
const SEEDS: &[&str] = &[
    "SELECT a, b FROM t WHERE a = $1 AND b LIKE 'x%' ORDER BY 1 LIMIT 10",
    "SELECT c.relname, n.nspname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n \
     ON n.oid = c.relnamespace WHERE c.relkind IN ('r','v') AND pg_catalog.pg_table_is_visible(c.oid)",
    "SELECT t.typname, t.oid FROM pg_type t WHERE t.typname = ANY($1::name[]) ORDER BY 1",
    "SELECT attname, format_type(atttypid, atttypmod), (SELECT c.collname FROM pg_collation c, pg_type t \
     WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) \
     FROM pg_attribute a WHERE attrelid = 't'::regclass AND attnum > 0 ORDER BY attnum",
    "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema NOT IN \
     ('pg_catalog','information_schema')",
    "WITH x AS (SELECT a, sum(c) AS s FROM t GROUP BY a) SELECT * FROM x WHERE s > 1.5",
    "SELECT CASE WHEN a > 0 THEN 'p' ELSE 'n' END, coalesce(b, '-'), c::text FROM t",
    "SELECT count(*) FROM t a JOIN t b ON a.a = b.a WHERE a.b COLLATE \"C\" OPERATOR(pg_catalog.~) '^x'",
    "SELECT array(SELECT rolname FROM pg_roles WHERE oid = ANY(p.polroles) ORDER BY 1) FROM pg_policy p",
    "SELECT current_schema(), current_user, version(), set_config('search_path', 'public', false)",
    "SELECT * FROM generate_series(1, 10) g WHERE g % 2 = 0",
    "SELECT a FROM t UNION ALL SELECT a FROM t EXCEPT SELECT 1",
];

fn planner() -> Planner {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.csv");
    std::fs::write(&path, "a,b,c\n1,x,1.5\n2,y,2.5\n3,,\n").expect("csv");
    let table = TableDef {
        name: "public.t".into(),
        location: path.display().to_string(),
        format: TableFormat::Csv,
        has_header: Some(true),
        delimiter: None,
        primary_key: Vec::new(),
        primary_key_name: None,
        foreign_keys: Vec::new(),
    };
    let runtime = runtime();
    let planner = runtime
        .block_on(Planner::new(
            &[table],
            &Managed::default(),
            2,
            None,
            planner::storage::Registry::new(Default::default()),
            Limits::default(),
        ))
        .expect("planner");
    // The table's file is listed when planned: keep it.
    std::mem::forget(dir);
    planner
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_stack_size(planner::limits::THREAD_STACK)
        .enable_all()
        .build()
        .expect("runtime")
}

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

fn literal(rng: &mut StdRng) -> String {
    match rng.random_range(0..10) {
        0 => rng.random::<i64>().to_string(),
        1 => format!("{}", rng.random::<f64>() * 1e6),
        2 => format!(
            "'{}'",
            pick(rng, &["", "x", "it''s", "1.5", "2024-01-01", "\\", "%_"])
        ),
        3 => "NULL".into(),
        4 => pick(rng, &["true", "false"]).into(),
        5 => format!(
            "DATE '2024-0{}-1{}'",
            rng.random_range(1..10),
            rng.random_range(0..10)
        ),
        6 => format!("${}", rng.random_range(1..4)),
        7 => format!(
            "'{}'::regclass",
            pick(rng, &["t", "pg_class", "nope", "public.t"])
        ),
        8 => format!(
            "ARRAY[{}, {}]",
            rng.random_range(0..9),
            rng.random_range(0..9)
        ),
        _ => rng.random_range(0..1000).to_string(),
    }
}

fn column(rng: &mut StdRng) -> String {
    pick(
        rng,
        &["a", "b", "c", "t.a", "x.a", "nope", "oid", "relname", "*"],
    )
    .into()
}

/// An expression nesting about `depth` levels.
fn expr(rng: &mut StdRng, depth: usize) -> String {
    if depth == 0 {
        return if rng.random() {
            literal(rng)
        } else {
            column(rng)
        };
    }
    let d = depth - 1;
    match rng.random_range(0..16) {
        0 | 1 => format!(
            "{} {} {}",
            expr(rng, d),
            pick(
                rng,
                &["+", "-", "*", "/", "%", "=", "<>", "<", ">=", "AND", "OR", "||", "LIKE", "~"]
            ),
            expr(rng, d)
        ),
        2 => format!("({})", expr(rng, d)),
        3 => format!("NOT {}", expr(rng, d)),
        4 => format!(
            "{}({})",
            pick(
                rng,
                &[
                    "abs",
                    "upper",
                    "length",
                    "coalesce",
                    "nullif",
                    "substr",
                    "round",
                    "sum",
                    "count",
                    "max",
                    "array_agg",
                    "string_agg",
                    "format_type",
                    "pg_get_expr",
                    "has_table_privilege",
                    "current_setting",
                    "now",
                    "random"
                ]
            ),
            (0..rng.random_range(0..4))
                .map(|_| expr(rng, d))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        5 => format!(
            "CASE WHEN {} THEN {} ELSE {} END",
            expr(rng, d),
            expr(rng, d),
            expr(rng, d)
        ),
        6 => format!(
            "CAST({} AS {})",
            expr(rng, d),
            pick(
                rng,
                &[
                    "int",
                    "bigint",
                    "text",
                    "numeric(10,2)",
                    "date",
                    "boolean",
                    "oid",
                    "name",
                    "regtype",
                    "double precision",
                    "timestamp with time zone",
                    "int[]"
                ]
            )
        ),
        7 => format!(
            "{}::{}",
            expr(rng, d),
            pick(rng, &["int", "text", "regclass", "oid", "float8"])
        ),
        8 => format!(
            "{} IN ({})",
            expr(rng, d),
            (0..rng.random_range(1..6))
                .map(|_| literal(rng))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        9 => format!("({})", query(rng, d)),
        10 => format!("EXISTS ({})", query(rng, d)),
        11 => format!("{} IS {}NULL", expr(rng, d), pick(rng, &["", "NOT "])),
        12 => format!(
            "{} BETWEEN {} AND {}",
            expr(rng, d),
            expr(rng, d),
            expr(rng, d)
        ),
        13 => format!("{} COLLATE \"C\"", expr(rng, d)),
        14 => format!("{} OPERATOR(pg_catalog.~) {}", expr(rng, d), expr(rng, d)),
        _ => format!("{} = ANY({})", expr(rng, d), expr(rng, d)),
    }
}

fn from(rng: &mut StdRng, depth: usize) -> String {
    match rng.random_range(0..8) {
        0 => "pg_catalog.pg_class c".into(),
        1 => "information_schema.columns".into(),
        2 => format!("generate_series(1, {}) g", rng.random_range(0..50)),
        3 if depth > 0 => format!("({}) x", query(rng, depth - 1)),
        4 => format!("t JOIN t x ON {}", expr(rng, depth.min(2))),
        5 => "pg_type".into(),
        _ => "t".into(),
    }
}

fn query(rng: &mut StdRng, depth: usize) -> String {
    let d = depth.saturating_sub(1);
    let mut sql = format!(
        "SELECT {} FROM {}",
        (0..rng.random_range(1..4))
            .map(|_| expr(rng, d))
            .collect::<Vec<_>>()
            .join(", "),
        from(rng, d)
    );
    if rng.random() {
        sql += &format!(" WHERE {}", expr(rng, d));
    }
    if rng.random_ratio(1, 4) {
        sql += &format!(" GROUP BY {}", expr(rng, 0));
    }
    if rng.random_ratio(1, 4) {
        sql += &format!(
            " ORDER BY {} LIMIT {}",
            expr(rng, 0),
            rng.random_range(0..100)
        );
    }
    if rng.random_ratio(1, 8) {
        sql = format!("WITH w AS ({sql}) SELECT * FROM w");
    }
    sql
}

/// A statement: from the grammar, a long operator chain, or a mutated seed.
fn statement(rng: &mut StdRng) -> String {
    match rng.random_range(0..8) {
        // Chains as deep as the limit, and deeper (the 54001 path); planning a deep one
        // takes seconds in a debug build, so most are short.
        0 => {
            let n = if rng.random_ratio(1, 40) {
                rng.random_range(1..6000)
            } else {
                rng.random_range(1..300)
            };
            let op = pick(rng, &["+", " OR a = ", " AND ", " || "]);
            format!("SELECT {}", vec!["1"; n].join(op))
        }
        // Parentheses nested past the parser's limit.
        1 => {
            let n = rng.random_range(1..300);
            format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n))
        }
        2 | 3 => {
            let seeds: Vec<Vec<u8>> = SEEDS.iter().map(|s| s.as_bytes().to_vec()).collect();
            String::from_utf8_lossy(&fuzz::mutated(rng, &seeds)).into_owned()
        }
        depth => query(rng, depth),
    }
}

#[test]
fn fuzz_sql() {
    // Planning recurses per level of nesting: on a thread with the gateway's stack.
    let report = std::thread::Builder::new()
        .stack_size(planner::limits::THREAD_STACK)
        .spawn(|| {
            let planner = planner();
            let runtime = runtime();
            let everyone = SessionInfo::default();
            let reader = SessionInfo {
                access: Access::granted(
                    auth::Principal::service("reader", &[]),
                    Arc::new(auth::Grants::default()),
                ),
                ..SessionInfo::default()
            };
            // A pg session also types its catalog results (result_types, reg_output).
            let pg = SessionInfo {
                protocol: "pg",
                ..SessionInfo::default()
            };
            fuzz::generated("sql", statement, |sql| {
                let Ok(statements) = planner.parse(sql) else {
                    return;
                };
                for statement in &statements {
                    for session in [&everyone, &reader, &pg] {
                        let planned = runtime.block_on(async {
                            let logical = planner.logical_plan(statement, session).await?;
                            let _ = Planner::parameter_types(&logical);
                            let optimized = planner.optimize(logical, Vec::new(), session)?;
                            planner.physical(&optimized).await
                        });
                        if let Ok(planned) = planned {
                            let _ = planner::codec::encode_plan(&planned.physical);
                        }
                    }
                }
            })
        })
        .expect("thread")
        .join()
        .expect("no panic");
    assert!(report.runs > 0);
}
