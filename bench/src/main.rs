//! sluice-bench: the measuring side of `bench/run.sh`.
//!
//! ```text
//! sluice-bench tpch-compare <tpch-dir> <conninfo> <queries-dir> <runs>
//!     the 22 TPC-H queries in-process with DataFusion over the Parquet files, and through
//!     a pg server, interleaved run by run for each query so that drift in the machine's
//!     speed affects both sides alike
//! sluice-bench stream-pg <conninfo> <sql> <text|binary>
//!     stream a large result and count rows without decoding values (rows/s)
//! sluice-bench overhead <tpch-dir> <conninfo> <runs> <sql> [<sql>…]
//!     each query in-process with DataFusion and through a pg server (a warm warehouse),
//!     interleaved; medians and the difference: what the gateway adds per query
//! sluice-bench tpch-settings <tpch-dir> <queries-dir> <runs> <variant> [<variant>…]
//!     the 22 TPC-H queries in-process with DataFusion configured as sluice's planner is,
//!     once per variant (`base`, or `name=value[,name=value…]` of DataFusion settings),
//!     the variants interleaved run by run so that drift affects them alike
//! sluice-bench auth-validate <issuer> <audience> <iterations> <token> [<token>…]
//!     validate real OIDC tokens with sluice's Authenticator: the first token's first check
//!     (discovery and key fetch included), each further token's first check (signature and
//!     claims, keys held), then the cached path, and a static token for comparison
//! sluice-bench series-cost <statements>
//!     what recording one statement in the admin page's series costs the gateway
//!     (`gateway::series::Series::statement`): ns per call from one thread, and from one
//!     thread per core at once (contending for its lock)
//! ```
//! Each prints one JSON object per line on stdout.

use std::path::Path;
use std::time::Instant;

use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use futures::{StreamExt, TryStreamExt};
use tokio_postgres::{NoTls, SimpleQueryMessage};

const TABLES: [&str; 8] = [
    "nation", "region", "part", "supplier", "partsupp", "customer", "orders", "lineitem",
];

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("tpch-compare") if args.len() == 6 => {
            tpch_compare(&args[2], &args[3], &args[4], args[5].parse()?).await
        }
        Some("tpch-settings") if args.len() >= 6 => {
            tpch_settings(&args[2], &args[3], args[4].parse()?, &args[5..]).await
        }
        Some("stream-pg") if args.len() == 5 => stream_pg(&args[2], &args[3], &args[4]).await,
        Some("overhead") if args.len() >= 6 => {
            overhead(&args[2], &args[3], args[4].parse()?, &args[5..]).await
        }
        Some("series-cost") if args.len() == 3 => series_cost(args[2].parse()?).await,
        Some("auth-validate") if args.len() >= 6 => {
            auth_validate(&args[2], &args[3], args[4].parse()?, &args[5..]).await
        }
        _ => {
            eprintln!("usage: see the doc comment of bench/src/main.rs");
            std::process::exit(2)
        }
    }
}

fn query(dir: &str, n: usize) -> Result<String> {
    Ok(std::fs::read_to_string(
        Path::new(dir).join(format!("q{n}.sql")),
    )?)
}

/// DataFusion in this process, configured as sluice's workers are (parallelism = cores).
async fn tpch_context(data: &str) -> Result<SessionContext> {
    let threads = std::thread::available_parallelism()?.get();
    tables_context(data, SessionConfig::new().with_target_partitions(threads)).await
}

/// The TPC-H tables of `data` in a context of the given config.
async fn tables_context(data: &str, config: SessionConfig) -> Result<SessionContext> {
    let ctx = SessionContext::new_with_config(config);
    ctx.sql("create schema tpch").await?.collect().await?;
    for table in TABLES {
        let path = format!("{}/{table}/", Path::new(data).canonicalize()?.display());
        ctx.register_parquet(
            format!("tpch.{table}"),
            &path,
            ParquetReadOptions::default(),
        )
        .await?;
    }
    Ok(ctx)
}

/// One context per variant: the config sluice's planner uses (see `planner::Planner::new`:
/// parallelism = cores, uncorrelated scalar subqueries planned as joins) with the
/// variant's settings on top.
async fn tpch_settings(data: &str, queries: &str, runs: usize, variants: &[String]) -> Result<()> {
    let threads = std::thread::available_parallelism()?.get();
    let mut contexts = Vec::new();
    for variant in variants {
        let mut config = SessionConfig::new().with_target_partitions(threads);
        config
            .options_mut()
            .optimizer
            .enable_physical_uncorrelated_scalar_subquery = false;
        if variant != "base" {
            for setting in variant.split(',') {
                let (name, value) = setting
                    .split_once('=')
                    .ok_or_else(|| format!("{setting:?}: expected name=value"))?;
                config.options_mut().set(name.trim(), value.trim())?;
            }
        }
        contexts.push(tables_context(data, config).await?);
    }
    for n in 1..=22 {
        let sql = query(queries, n)?;
        for run in 0..runs {
            for (variant, ctx) in variants.iter().zip(&contexts) {
                let started = Instant::now();
                let batches = ctx.sql(&sql).await?.collect().await?;
                let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                let seconds = started.elapsed().as_secs_f64();
                println!(
                    r#"{{"variant":{variant:?},"query":{n},"run":{run},"seconds":{seconds},"rows":{rows}}}"#
                );
            }
        }
    }
    Ok(())
}

async fn connect(conninfo: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(conninfo, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("connection error: {e}");
        }
    });
    Ok(client)
}

async fn tpch_compare(data: &str, conninfo: &str, queries: &str, runs: usize) -> Result<()> {
    let ctx = tpch_context(data).await?;
    let client = connect(conninfo).await?;
    for n in 1..=22 {
        let sql = query(queries, n)?;
        for run in 0..runs {
            let started = Instant::now();
            let batches = ctx.sql(&sql).await?.collect().await?;
            let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
            let seconds = started.elapsed().as_secs_f64();
            println!(
                r#"{{"engine":"datafusion","query":{n},"run":{run},"seconds":{seconds},"rows":{rows}}}"#
            );

            let started = Instant::now();
            let messages = client.simple_query(&sql).await?;
            let rows = messages
                .iter()
                .filter(|m| matches!(m, SimpleQueryMessage::Row(_)))
                .count();
            let seconds = started.elapsed().as_secs_f64();
            println!(
                r#"{{"engine":"pg","query":{n},"run":{run},"seconds":{seconds},"rows":{rows}}}"#
            );
        }
    }
    Ok(())
}

async fn overhead(data: &str, conninfo: &str, runs: usize, queries: &[String]) -> Result<()> {
    let ctx = tpch_context(data).await?;
    let client = connect(conninfo).await?;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for sql in queries {
        // Warm both sides (file metadata, the worker's first query).
        ctx.sql(sql).await?.collect().await?;
        client.simple_query(sql).await?;
        let (mut local, mut gateway) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let started = Instant::now();
            ctx.sql(sql).await?.collect().await?;
            local.push(started.elapsed().as_secs_f64() * 1e3);
            let started = Instant::now();
            client.simple_query(sql).await?;
            gateway.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let (local, gateway) = (median(local), median(gateway));
        println!(
            r#"{{"sql":{sql:?},"runs":{runs},"in_process_ms":{local:.3},"gateway_ms":{gateway:.3},"overhead_ms":{:.3}}}"#,
            gateway - local
        );
    }
    Ok(())
}

async fn stream_pg(conninfo: &str, sql: &str, format: &str) -> Result<()> {
    let client = connect(conninfo).await?;
    let started = Instant::now();
    let mut rows = 0u64;
    match format {
        // Simple query protocol, text values (what psql and most BI traffic use).
        "text" => {
            let mut stream = std::pin::pin!(client.simple_query_raw(sql).await?);
            while let Some(message) = stream.try_next().await? {
                if let SimpleQueryMessage::Row(_) = message {
                    rows += 1;
                }
            }
        }
        // Extended protocol, binary values (what asyncpg and JDBC's binary mode use).
        _ => {
            let params: Vec<i32> = Vec::new();
            let mut stream = std::pin::pin!(client.query_raw(sql, params.iter()).await?);
            while let Some(row) = stream.next().await {
                row?;
                rows += 1;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        r#"{{"format":"{format}","rows":{rows},"seconds":{seconds},"rows_per_second":{}}}"#,
        rows as f64 / seconds
    );
    Ok(())
}

/// Nanoseconds per call of `authenticate` for one token, `iterations` times.
async fn time_validations(
    auth: &auth::Authenticator,
    token: &str,
    iterations: usize,
) -> Result<Vec<u64>> {
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        auth.authenticate(token).await?;
        samples.push(start.elapsed().as_nanos() as u64);
    }
    samples.sort_unstable();
    Ok(samples)
}

fn summary(samples: &[u64]) -> String {
    let mean = samples.iter().sum::<u64>() as f64 / samples.len().max(1) as f64;
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    format!(
        "{{\"mean_ns\": {mean:.0}, \"p50_ns\": {}, \"p99_ns\": {}, \"n\": {}}}",
        at(0.5),
        at(0.99),
        samples.len()
    )
}

async fn auth_validate(
    issuer: &str,
    audience: &str,
    iterations: usize,
    tokens: &[String],
) -> Result<()> {
    let token = tokens[0].as_str();
    let static_token = auth::generate_token();
    let authenticator = auth::Authenticator::with_oidc(
        vec![auth::StaticToken::from_secret(
            &static_token,
            auth::Principal::service("bench", &[]),
        )],
        auth::OidcSettings {
            issuers: vec![issuer.to_string()],
            audiences: vec![audience.to_string()],
            ..auth::OidcSettings::default()
        },
    )?;
    // First sight of the token: discovery, key set, signature and claims.
    let start = Instant::now();
    let principal = authenticator.authenticate(token).await?;
    let first = start.elapsed();
    // New tokens with the keys already held: what each new login costs.
    let mut fresh = Vec::new();
    for other in &tokens[1..] {
        let start = Instant::now();
        authenticator.authenticate(other).await?;
        fresh.push(start.elapsed().as_nanos() as u64);
    }
    fresh.sort_unstable();
    let cached = time_validations(&authenticator, token, iterations).await?;
    let static_samples = time_validations(&authenticator, &static_token, iterations).await?;
    println!(
        "{{\"principal\": \"{}\", \"token_bytes\": {}, \"first_validation_us\": {:.1}, \"new_token\": {}, \"cached\": {}, \"static\": {}, \"jwks_fetches\": {}}}",
        principal.name,
        token.len(),
        first.as_secs_f64() * 1e6,
        if fresh.is_empty() { "null".to_string() } else { summary(&fresh) },
        summary(&cached),
        summary(&static_samples),
        authenticator
            .issuer_stats()
            .iter()
            .map(|s| s.jwks_fetches)
            .sum::<u64>()
    );
    Ok(())
}

/// Calls of `Series::statement` for a warehouse the series knows, timed.
async fn series_cost(statements: u64) -> Result<()> {
    use gateway::series::{Sample, Series, Statement};
    let series = Series::open(None).await;
    series.sample(&[Sample::named("default")]);
    let run = |series: &Series, n: u64| {
        for i in 0..n {
            series.statement(Statement {
                warehouse: "default",
                outcome: if i % 50 == 0 { "failed" } else { "finished" },
                total: std::time::Duration::from_micros(100 + i % 5000),
                queued: (i % 3 == 0).then(|| std::time::Duration::from_micros(i % 700)),
                from_cache: if i % 2 == 0 { "hit" } else { "miss" },
                rows: 1,
                bytes: 8,
            });
        }
    };
    let start = Instant::now();
    run(&series, statements);
    let one = start.elapsed().as_nanos() as f64 / statements as f64;
    let threads = std::thread::available_parallelism()?.get();
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| run(&series, statements));
        }
    });
    let all =
        start.elapsed().as_nanos() as f64 * threads as f64 / (statements * threads as u64) as f64;
    println!(
        "{{\"measure\":\"series statement\",\"ns_per_call_one_thread\":{one:.1},\
         \"threads\":{threads},\"thread_ns_per_call_contended\":{all:.1}}}"
    );
    Ok(())
}
