//! Series over time for the admin page's charts, per warehouse: statements finished,
//! failed and canceled, their latency (a histogram, for p50 / p95 / p99), queue wait, cache
//! hits, rows and bytes served; and, sampled every [`SAMPLE_EVERY`], statements queued,
//! workers running against the warehouse's min / max, and its scaling events.
//!
//! Each statement lands in the current 10-second bucket (one lock, a few additions). When a
//! bucket closes it is kept, and merged into the 5-minute bucket that holds it, which in
//! turn merges into a 30-minute one: the series is downsampled as it ages, and each
//! resolution keeps a fixed number of buckets ([`RESOLUTIONS`]: 1 h at 10 s, 24 h at 5 min,
//! 7 d at 30 min). Closed buckets go to the metadata store every [`FLUSH_EVERY`] (older ones
//! are deleted there), and are read back when the gateway starts: the charts survive a
//! restart. Bounded: at most [`MAX_TRACKS`] warehouses, each `360 + 288 + 336` buckets.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::metadata::{SeriesRow, Store};

/// Bucket widths (seconds) and how many of each are kept.
pub const RESOLUTIONS: [(u32, usize); 3] = [(10, 360), (300, 288), (1800, 336)];
/// Gauges (queue, workers, scaling events) are read this often.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Closed buckets are written to the store this often.
pub const FLUSH_EVERY: Duration = Duration::from_secs(10);
/// Warehouses (and the gateway itself, for statements that ran on none) tracked at most.
pub const MAX_TRACKS: usize = 64;
/// Latency histogram buckets: four per doubling from 1 µs (the last holds an hour and more).
const LATENCY_BUCKETS: usize = 128;

/// The windows the page offers: name, span, and the resolution that draws it.
pub const WINDOWS: [(&str, u32, u32); 4] = [
    ("15m", 900, 10),
    ("1h", 3600, 10),
    ("24h", 86_400, 300),
    ("7d", 604_800, 1800),
];

/// Reasons a warehouse starts workers for; the others (`idle`, `reload`, `health`,
/// `stuck`) stop one or take it out of admission.
const SCALE_UP: &[&str] = &["min_workers", "queue", "replace"];

/// What one bucket holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Bucket {
    pub finished: u64,
    pub failed: u64,
    pub canceled: u64,
    /// Statements by latency bucket (see [`latency_bucket`]), only those with any.
    pub latency: BTreeMap<u16, u64>,
    /// Statements that waited for a worker slot, and how long together and at most.
    pub waited: u64,
    pub wait_us: u64,
    pub wait_max_us: u64,
    /// Statements the result cache answered, and those it looked up and missed.
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub rows: u64,
    pub bytes: u64,
    /// Gauge readings in the bucket: how many, and their sums and extremes.
    pub samples: u64,
    pub queued_sum: u64,
    pub queued_max: u64,
    pub workers_sum: u64,
    pub workers_max: u64,
    pub workers_min: Option<u64>,
    pub min_workers: u64,
    pub max_workers: u64,
    /// Scaling decisions in the bucket, by reason.
    pub scale_events: BTreeMap<String, u64>,
}

impl Bucket {
    fn merge(&mut self, other: &Bucket) {
        self.finished += other.finished;
        self.failed += other.failed;
        self.canceled += other.canceled;
        for (k, v) in &other.latency {
            *self.latency.entry(*k).or_default() += v;
        }
        self.waited += other.waited;
        self.wait_us += other.wait_us;
        self.wait_max_us = self.wait_max_us.max(other.wait_max_us);
        self.cache_hits += other.cache_hits;
        self.cache_misses += other.cache_misses;
        self.rows += other.rows;
        self.bytes += other.bytes;
        self.samples += other.samples;
        self.queued_sum += other.queued_sum;
        self.queued_max = self.queued_max.max(other.queued_max);
        self.workers_sum += other.workers_sum;
        self.workers_max = self.workers_max.max(other.workers_max);
        self.workers_min = match (self.workers_min, other.workers_min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if other.samples > 0 {
            self.min_workers = other.min_workers;
            self.max_workers = other.max_workers;
        }
        for (k, v) in &other.scale_events {
            *self.scale_events.entry(k.clone()).or_default() += v;
        }
    }

    pub fn statements(&self) -> u64 {
        self.finished + self.failed + self.canceled
    }

    /// The latency at quantile `q` (0–1), in microseconds (None: no statement).
    pub fn latency_us(&self, q: f64) -> Option<f64> {
        let total: u64 = self.latency.values().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (bucket, n) in &self.latency {
            seen += n;
            if seen >= rank {
                return Some(2f64.powf((*bucket as f64 + 0.5) / 4.0));
            }
        }
        None
    }

    /// Scaling decisions that started workers, and those that stopped some.
    pub fn scale_ups_downs(&self) -> (u64, u64) {
        self.scale_events.iter().fold((0, 0), |(up, down), (k, v)| {
            if starts_workers(k) {
                (up + v, down)
            } else {
                (up, down + v)
            }
        })
    }
}

/// Whether a scaling decision of this reason starts a worker (else it stops one).
pub fn starts_workers(reason: &str) -> bool {
    SCALE_UP.contains(&reason)
}

/// The latency histogram bucket of a duration: `floor(4 · log2(µs))`.
pub fn latency_bucket(d: Duration) -> u16 {
    let us = d.as_micros().max(1) as f64;
    ((us.log2() * 4.0) as usize).min(LATENCY_BUCKETS - 1) as u16
}

/// One statement that ended, as [`Series::statement`] takes it.
pub struct Statement<'a> {
    /// `""`: it ran on no warehouse (the gateway answered it).
    pub warehouse: &'a str,
    /// `finished`, `failed` or `canceled`.
    pub outcome: &'a str,
    pub total: Duration,
    /// How long it waited for a worker slot (None: it needed none).
    pub queued: Option<Duration>,
    /// `none`, `hit`, `shared`, `restored` or `miss`.
    pub from_cache: &'a str,
    pub rows: u64,
    pub bytes: u64,
}

/// A warehouse's readings at one moment.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub warehouse: String,
    pub queued: u64,
    pub workers: u64,
    pub min_workers: u64,
    pub max_workers: u64,
    /// Scaling decisions so far, by reason (counted since the gateway started).
    pub scale_events: BTreeMap<String, u64>,
}

impl Sample {
    /// A reading of nothing, for `warehouse`.
    pub fn named(warehouse: &str) -> Self {
        Sample {
            warehouse: warehouse.into(),
            ..Default::default()
        }
    }
}

/// A warehouse's series.
#[derive(Debug, Default)]
struct Track {
    name: String,
    /// The current 10-second bucket and its start.
    live: (i64, Bucket),
    /// Closed buckets per resolution, oldest first.
    rings: [VecDeque<(i64, Bucket)>; 3],
    /// The 5-minute and 30-minute buckets being filled.
    rollups: [(i64, Bucket); 2],
    /// Scaling decisions counted at the last sample.
    last_events: Option<BTreeMap<String, u64>>,
    /// Buckets to write to the store.
    dirty: Vec<(u32, i64, Bucket)>,
}

impl Track {
    fn new(name: &str, now: i64) -> Self {
        Track {
            name: name.to_string(),
            live: (floor(now, RESOLUTIONS[0].0), Bucket::default()),
            rollups: [
                (floor(now, RESOLUTIONS[1].0), Bucket::default()),
                (floor(now, RESOLUTIONS[2].0), Bucket::default()),
            ],
            ..Default::default()
        }
    }

    /// The live bucket for `now`, closing the one before if its time is over.
    fn at(&mut self, now: i64) -> &mut Bucket {
        let start = floor(now, RESOLUTIONS[0].0);
        if start > self.live.0 {
            let closed = std::mem::replace(&mut self.live, (start, Bucket::default()));
            self.close(closed);
        }
        &mut self.live.1
    }

    fn close(&mut self, (start, bucket): (i64, Bucket)) {
        self.keep(0, start, bucket.clone());
        let period = floor(start, RESOLUTIONS[1].0);
        if period > self.rollups[0].0 {
            // The 5-minute bucket is complete: kept, and merged into its 30-minute one.
            let done = std::mem::replace(&mut self.rollups[0], (period, Bucket::default()));
            self.keep(1, done.0, done.1.clone());
            let period = floor(done.0, RESOLUTIONS[2].0);
            if period > self.rollups[1].0 {
                let done = std::mem::replace(&mut self.rollups[1], (period, Bucket::default()));
                self.keep(2, done.0, done.1);
            }
            self.rollups[1].1.merge(&done.1);
        }
        self.rollups[0].1.merge(&bucket);
    }

    fn keep(&mut self, level: usize, start: i64, bucket: Bucket) {
        let (res, max) = RESOLUTIONS[level];
        // Empty buckets are kept in memory (a gap is drawn as zero) but not written.
        if bucket != Bucket::default() {
            self.dirty.push((res, start, bucket.clone()));
        }
        let ring = &mut self.rings[level];
        ring.push_back((start, bucket));
        while ring.len() > max {
            ring.pop_front();
        }
    }

    /// Buckets of `resolution` from `since` on, the one being filled included.
    fn window(&self, resolution: u32, since: i64) -> Vec<(i64, Bucket)> {
        let Some(level) = RESOLUTIONS.iter().position(|(r, _)| *r == resolution) else {
            return Vec::new();
        };
        // Closed buckets of this resolution, then what finer ones hold that has not
        // reached it yet.
        let mut parts: Vec<&(i64, Bucket)> = self.rings[level].iter().collect();
        parts.extend(self.rollups[..level].iter().rev());
        parts.push(&self.live);
        let mut out: BTreeMap<i64, Bucket> = BTreeMap::new();
        for (start, bucket) in parts {
            let start = floor(*start, resolution);
            if start >= since {
                out.entry(start).or_default().merge(bucket);
            }
        }
        out.into_iter().collect()
    }
}

fn floor(t: i64, res: u32) -> i64 {
    t - t.rem_euclid(res as i64)
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The series of every warehouse.
pub struct Series {
    store: Option<Arc<Store>>,
    tracks: Mutex<Vec<Track>>,
}

impl std::fmt::Debug for Series {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Series").finish_non_exhaustive()
    }
}

impl Series {
    /// Series kept in `store` (None: in memory only), with what it holds read back.
    pub async fn open(store: Option<Arc<Store>>) -> Arc<Self> {
        let series = Arc::new(Series::new(store.clone(), now_secs()));
        if let Some(store) = store {
            match store.series().await {
                Ok(rows) => series.restore(rows, now_secs()),
                Err(e) => tracing::warn!(error = %e, "the series kept before cannot be read"),
            }
        }
        series
    }

    /// No series yet but the gateway's own (statements that ran on no warehouse); the
    /// warehouses' come with their first reading.
    fn new(store: Option<Arc<Store>>, now: i64) -> Self {
        Series {
            store,
            tracks: Mutex::new(vec![Track::new("", now)]),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Track>> {
        self.tracks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn restore(&self, mut rows: Vec<SeriesRow>, now: i64) {
        rows.sort_by_key(|r| r.start);
        let mut tracks = self.lock();
        for row in rows {
            let Some(level) = RESOLUTIONS.iter().position(|(r, _)| *r == row.resolution) else {
                continue;
            };
            let Ok(bucket) = serde_json::from_slice::<Bucket>(&row.bucket) else {
                continue;
            };
            let Some(track) = track(&mut tracks, &row.warehouse, now) else {
                continue;
            };
            // The period being filled now continues where the last run left it.
            if level > 0 && track.rollups[level - 1].0 == row.start {
                track.rollups[level - 1].1 = bucket;
                continue;
            }
            if level == 0 && track.live.0 == row.start {
                track.live.1 = bucket;
                continue;
            }
            let ring = &mut track.rings[level];
            ring.push_back((row.start, bucket));
            while ring.len() > RESOLUTIONS[level].1 {
                ring.pop_front();
            }
        }
    }

    /// A statement ended.
    pub fn statement(&self, s: Statement<'_>) {
        self.statement_at(s, now_secs());
    }

    fn statement_at(&self, s: Statement<'_>, now: i64) {
        let mut tracks = self.lock();
        // Only warehouses the sampler has seen (and the gateway's own track): a session
        // naming a warehouse that does not exist makes no series.
        let Some(track) = tracks.iter_mut().find(|t| t.name == s.warehouse) else {
            return;
        };
        let b = track.at(now);
        match s.outcome {
            "finished" => b.finished += 1,
            "canceled" => b.canceled += 1,
            _ => b.failed += 1,
        }
        *b.latency.entry(latency_bucket(s.total)).or_default() += 1;
        if let Some(waited) = s.queued {
            let us = waited.as_micros() as u64;
            b.waited += 1;
            b.wait_us += us;
            b.wait_max_us = b.wait_max_us.max(us);
        }
        match s.from_cache {
            "hit" | "shared" | "restored" => b.cache_hits += 1,
            "miss" => b.cache_misses += 1,
            _ => {}
        }
        b.rows += s.rows;
        b.bytes += s.bytes;
    }

    /// Gauge readings of every warehouse.
    pub fn sample(&self, samples: &[Sample]) {
        self.sample_at(samples, now_secs());
    }

    fn sample_at(&self, samples: &[Sample], now: i64) {
        let mut tracks = self.lock();
        for s in samples {
            let Some(track) = track(&mut tracks, &s.warehouse, now) else {
                continue;
            };
            let events: BTreeMap<String, u64> = match &track.last_events {
                Some(last) => s
                    .scale_events
                    .iter()
                    .filter_map(|(k, v)| {
                        let new = v.saturating_sub(last.get(k).copied().unwrap_or(0));
                        (new > 0).then(|| (k.clone(), new))
                    })
                    .collect(),
                // The first reading after a start: what came before was counted then.
                None => BTreeMap::new(),
            };
            track.last_events = Some(s.scale_events.clone());
            let b = track.at(now);
            b.samples += 1;
            b.queued_sum += s.queued;
            b.queued_max = b.queued_max.max(s.queued);
            b.workers_sum += s.workers;
            b.workers_max = b.workers_max.max(s.workers);
            b.workers_min = Some(b.workers_min.map_or(s.workers, |m| m.min(s.workers)));
            b.min_workers = s.min_workers;
            b.max_workers = s.max_workers;
            for (k, v) in events {
                *b.scale_events.entry(k).or_default() += v;
            }
        }
        // Tracks with nothing new close their buckets too.
        for t in tracks.iter_mut() {
            t.at(now);
        }
    }

    /// The warehouses (and `""`, the gateway) with a series.
    pub fn names(&self) -> Vec<String> {
        self.lock().iter().map(|t| t.name.clone()).collect()
    }

    /// A warehouse's buckets over a window (`WINDOWS`' name): their resolution, and the
    /// buckets oldest first (the one being filled last).
    pub fn window(&self, warehouse: &str, window: &str) -> Option<(u32, Vec<(i64, Bucket)>)> {
        let (_, span, res) = WINDOWS.iter().find(|(w, _, _)| *w == window)?;
        let since = now_secs() - *span as i64;
        let tracks = self.lock();
        let t = tracks.iter().find(|t| t.name == warehouse)?;
        Some((*res, t.window(*res, since)))
    }

    /// Buckets held in memory, over every warehouse and resolution.
    pub fn buckets(&self) -> usize {
        self.lock()
            .iter()
            .map(|t| t.rings.iter().map(VecDeque::len).sum::<usize>())
            .sum()
    }

    /// Write the buckets closed since the last flush, and the periods being filled (so a
    /// restart continues them); delete what has aged out.
    pub async fn flush(&self) -> Result<(), crate::metadata::StoreError> {
        self.flush_at(now_secs()).await
    }

    async fn flush_at(&self, now: i64) -> Result<(), crate::metadata::StoreError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let (rows, taken) = {
            let mut tracks = self.lock();
            let mut rows = Vec::new();
            let mut taken = Vec::new();
            for t in tracks.iter_mut() {
                let dirty = std::mem::take(&mut t.dirty);
                taken.push((t.name.clone(), dirty.clone()));
                for (resolution, start, bucket) in dirty {
                    rows.push(row(&t.name, resolution, start, &bucket));
                }
                for (level, (start, bucket)) in t.rollups.iter().enumerate() {
                    if *bucket != Bucket::default() {
                        rows.push(row(&t.name, RESOLUTIONS[level + 1].0, *start, bucket));
                    }
                }
            }
            (rows, taken)
        };
        let horizons = RESOLUTIONS
            .iter()
            .map(|(res, keep)| (*res, floor(now, *res) - (*res as i64) * (*keep as i64)))
            .collect();
        if let Err(e) = store.put_series(rows, horizons).await {
            // Written with the next flush (bounded: what has aged out by then is dropped).
            let mut tracks = self.lock();
            for (name, mut dirty) in taken {
                if let Some(t) = tracks.iter_mut().find(|t| t.name == name) {
                    dirty.append(&mut t.dirty);
                    let max: usize = RESOLUTIONS.iter().map(|(_, k)| k).sum();
                    let over = dirty.len().saturating_sub(max);
                    t.dirty = dirty.split_off(over);
                }
            }
            return Err(e);
        }
        Ok(())
    }

    /// Reads the warehouses every [`SAMPLE_EVERY`] and writes to the store every
    /// [`FLUSH_EVERY`], until `shutdown` (then writes once more).
    pub async fn run(
        self: Arc<Self>,
        warehouses: Arc<crate::warehouses::Warehouses>,
        shutdown: CancellationToken,
    ) {
        let mut sample = tokio::time::interval(SAMPLE_EVERY);
        sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_flush = tokio::time::Instant::now();
        let mut failing = false;
        loop {
            let stop = tokio::select! {
                _ = shutdown.cancelled() => true,
                _ = sample.tick() => false,
            };
            let samples: Vec<Sample> = warehouses
                .all()
                .iter()
                .map(|w| {
                    let s = w.status();
                    Sample {
                        warehouse: s.name.clone(),
                        queued: s.queued as u64,
                        workers: s.workers.iter().filter(|w| w.state == "ready").count() as u64,
                        min_workers: s.config.min_workers as u64,
                        max_workers: s.config.max_workers as u64,
                        scale_events: s
                            .scale_events
                            .iter()
                            .map(|(k, v)| (k.to_string(), *v))
                            .collect(),
                    }
                })
                .collect();
            self.sample(&samples);
            if stop || last_flush.elapsed() >= FLUSH_EVERY {
                last_flush = tokio::time::Instant::now();
                match self.flush().await {
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("series are being written again");
                    }
                    Ok(()) => {}
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "series cannot be written; they wait in memory");
                    }
                    Err(_) => {}
                }
            }
            if stop {
                return;
            }
        }
    }
}

fn row(warehouse: &str, resolution: u32, start: i64, bucket: &Bucket) -> SeriesRow {
    SeriesRow {
        warehouse: warehouse.to_string(),
        resolution,
        start,
        bucket: serde_json::to_vec(bucket).unwrap_or_default(),
    }
}

/// The track of `name`, made if there is room.
fn track<'a>(tracks: &'a mut Vec<Track>, name: &str, now: i64) -> Option<&'a mut Track> {
    match tracks.iter().position(|t| t.name == name) {
        Some(i) => Some(&mut tracks[i]),
        None if tracks.len() < MAX_TRACKS => {
            tracks.push(Track::new(name, now));
            tracks.last_mut()
        }
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(warehouse: &str, ms: u64) -> Statement<'_> {
        Statement {
            warehouse,
            outcome: "finished",
            total: Duration::from_millis(ms),
            queued: Some(Duration::from_millis(1)),
            from_cache: "miss",
            rows: 10,
            bytes: 100,
        }
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut b = Bucket::default();
        for ms in 1..=100u64 {
            *b.latency
                .entry(latency_bucket(Duration::from_millis(ms)))
                .or_default() += 1;
        }
        let p50 = b.latency_us(0.5).unwrap() / 1e3;
        let p99 = b.latency_us(0.99).unwrap() / 1e3;
        assert!((40.0..=60.0).contains(&p50), "p50 {p50} ms");
        assert!((85.0..=115.0).contains(&p99), "p99 {p99} ms");
        assert_eq!(Bucket::default().latency_us(0.5), None);
    }

    #[test]
    fn buckets_roll_up_as_they_age() {
        let t0 = 1_800_000_000 - 1_800_000_000 % 1800;
        let series = Series::new(None, t0);
        // A warehouse the sampler has not seen has no series.
        series.statement_at(finished("w", 5), t0);
        assert_eq!(series.names(), [""]);
        series.sample_at(&[Sample::named("w")], t0);
        // One statement every 10 s for an hour.
        for i in 0..360 {
            series.statement_at(finished("w", 5), t0 + i * 10);
        }
        series.sample_at(&[], t0 + 3600);
        let tracks = series.lock();
        let w = tracks.iter().find(|t| t.name == "w").unwrap();
        let fine = w.window(10, t0);
        assert_eq!(fine.len(), 361);
        assert_eq!(fine.iter().map(|(_, b)| b.finished).sum::<u64>(), 360);
        let coarse = w.window(300, t0);
        assert_eq!(
            coarse.len(),
            13,
            "twelve 5-minute buckets and the one being filled"
        );
        assert_eq!(coarse.iter().map(|(_, b)| b.finished).sum::<u64>(), 360);
        assert!(coarse[..12].iter().all(|(_, b)| b.finished == 30));
        let half_hours = w.window(1800, t0);
        assert_eq!(half_hours.iter().map(|(_, b)| b.finished).sum::<u64>(), 360);
    }

    #[test]
    fn scale_events_are_the_differences_between_readings() {
        let series = Series::new(None, 1000);
        let sample = |queue: u64, up: u64| Sample {
            warehouse: "w".into(),
            queued: queue,
            workers: up,
            min_workers: 1,
            max_workers: 4,
            scale_events: [("queue".to_string(), up), ("min_workers".to_string(), 1)].into(),
        };
        series.sample_at(&[sample(0, 1)], 1000);
        series.sample_at(&[sample(5, 3)], 1002);
        let tracks = series.lock();
        let b = &tracks[1].live.1;
        assert_eq!(b.scale_ups_downs(), (2, 0));
        assert_eq!(
            (b.samples, b.queued_max, b.workers_min, b.workers_max),
            (2, 5, Some(1), 3)
        );
    }

    /// A month of statements and samples: the store keeps at most the buckets the
    /// resolutions promise, and its file stops growing.
    #[tokio::test]
    async fn storage_stays_bounded_over_a_long_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(None, dir.path()).await.expect("opens");
        let t0: i64 = 1_800_000_000;
        let series = Series::new(Some(store.clone()), t0);
        let day = 86_400;
        let mut sizes = Vec::new();
        // A statement on each warehouse every 30 s, a reading and a flush every hour.
        for step in 0..(30 * day / 30) {
            let now = t0 + step * 30;
            if step % 120 == 0 {
                series.sample_at(
                    &[Sample {
                        warehouse: "default".into(),
                        workers: 1 + (step / 120 % 3) as u64,
                        max_workers: 4,
                        ..Default::default()
                    }],
                    now,
                );
                series.flush_at(now).await.expect("flushes");
            }
            series.statement_at(finished("default", 3 + (step % 50) as u64), now);
            series.statement_at(finished("", 1), now);
            if step % (day / 30) == 0 {
                sizes.push(
                    std::fs::metadata(dir.path().join("metadata.redb"))
                        .unwrap()
                        .len(),
                );
            }
        }
        series.flush_at(t0 + 30 * day).await.expect("flushes");
        let rows = store.series().await.expect("reads");
        // At most what the resolutions keep (and the two periods being filled), per
        // warehouse; the 10-second resolution only holds the buckets that had statements
        // (one in three) of the last hour.
        let per_track: usize = RESOLUTIONS.iter().map(|(_, k)| k + 1).sum();
        assert!(rows.len() <= 2 * per_track, "{} rows", rows.len());
        assert!(rows.len() >= 2 * (288 + 336 + 100), "{} rows", rows.len());
        assert!(series.buckets() <= 2 * (per_track - 3));
        // The file after a week is as large as it gets (redb reuses freed pages).
        let week = sizes[7];
        let last = *sizes.last().unwrap();
        assert!(
            last <= week + week / 2,
            "file grew from {week} to {last} bytes"
        );
        assert!(last < 32 << 20, "{last} bytes");
        // Read back (a restart): the charts continue.
        let again = Series::open(Some(store)).await;
        assert_eq!(again.names().len(), 2);
        let (resolution, week) = again.window("default", "7d").expect("a series");
        assert_eq!(resolution, 1800);
        assert!(week.iter().filter(|(_, b)| b.finished > 0).count() >= 300);
    }
}
