//! The worker's data cache: the bytes of Parquet files on object storage that scans read
//! (footers, page indexes, column chunks), kept on local disk so that a repeated scan of
//! remote data reads local disk instead of the network.
//!
//! Files are cached in aligned blocks of [`BLOCK`] bytes, each in a file of its own under
//! the cache directory, named by the object and the block. An object is known by its
//! path, size, modification time and ETag **as the plan names them**: the gateway listed
//! the table (or read the Delta log) to plan the query and to compute its result-cache
//! key, so the bytes a worker serves from here are the bytes of exactly the version the
//! key names. A blob rewritten in place gets a new modification time and ETag, hence new
//! blocks; the old ones age out. The cache is bounded in bytes and evicts the least
//! recently used blocks first.
//!
//! Only Parquet scans read through it: CSV and JSON files are read whole and streamed,
//! and files on local disk are not copied to local disk.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::ParquetFileMetrics;
use datafusion::datasource::physical_plan::{
    FileScanConfig, FileScanConfigBuilder, ParquetFileReaderFactory, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result as DfResult;
use datafusion::execution::TaskContext;
use datafusion::parquet::arrow::arrow_reader::ArrowReaderOptions;
use datafusion::parquet::arrow::async_reader::AsyncFileReader;
use datafusion::parquet::errors::ParquetError;
use datafusion::parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use datafusion::physical_plan::metrics::{Count, ExecutionPlanMetricsSet};
use datafusion::physical_plan::ExecutionPlan;
use futures::future::BoxFuture;
use futures::FutureExt;
use object_store::{ObjectMeta, ObjectStore};
use sha2::{Digest, Sha256};

/// The unit of caching: reads are rounded out to whole blocks.
pub const BLOCK: u64 = 1 << 20;
/// Longest run of missing blocks fetched with one request.
const MAX_RUN: u64 = 16;

/// Where a worker keeps its cache and how large it may grow.
#[derive(Debug, Clone, PartialEq)]
pub struct DataCacheConfig {
    pub dir: PathBuf,
    pub capacity: u64,
}

/// Counters of one worker's cache (reported in `system.workers`).
#[derive(Debug, Default)]
pub struct CacheStats {
    /// Blocks served from local disk.
    pub hits: AtomicU64,
    /// Blocks fetched from object storage.
    pub misses: AtomicU64,
}

/// One worker's cache of remote Parquet bytes.
#[derive(Debug)]
pub struct DataCache {
    dir: PathBuf,
    capacity: u64,
    index: Mutex<Index>,
    pub stats: CacheStats,
    /// Set after a write failed (disk full, directory gone): logged once.
    write_failed: AtomicBool,
}

type ObjectId = [u8; 16];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct BlockId {
    object: ObjectId,
    block: u64,
}

/// Which blocks are on disk, how large, and in which order they were last used.
#[derive(Debug, Default)]
struct Index {
    blocks: HashMap<BlockId, (u64, u64)>, // block → (length, last use)
    by_use: BTreeMap<u64, BlockId>,
    bytes: u64,
    clock: u64,
}

impl Index {
    fn touch(&mut self, id: BlockId) -> Option<u64> {
        self.clock += 1;
        let clock = self.clock;
        let (len, used) = self.blocks.get_mut(&id)?;
        self.by_use.remove(used);
        *used = clock;
        self.by_use.insert(clock, id);
        Some(*len)
    }

    /// Record a block; the blocks to evict to stay within `capacity`.
    fn insert(&mut self, id: BlockId, len: u64, capacity: u64) -> Vec<BlockId> {
        if self.touch(id).is_some() {
            return Vec::new();
        }
        self.clock += 1;
        self.blocks.insert(id, (len, self.clock));
        self.by_use.insert(self.clock, id);
        self.bytes += len;
        let mut evicted = Vec::new();
        while self.bytes > capacity {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            if let Some((len, _)) = self.blocks.remove(&oldest) {
                self.bytes -= len;
            }
            evicted.push(oldest);
        }
        evicted
    }

    fn forget(&mut self, id: BlockId) {
        if let Some((len, used)) = self.blocks.remove(&id) {
            self.by_use.remove(&used);
            self.bytes -= len;
        }
    }
}

impl DataCache {
    /// A cache in `config.dir`, emptied first (what a previous process left there is not
    /// indexed, so it could never be evicted).
    pub fn open(config: &DataCacheConfig) -> std::io::Result<Self> {
        match std::fs::remove_dir_all(&config.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(&config.dir)?;
        Ok(Self {
            dir: config.dir.clone(),
            capacity: config.capacity,
            index: Mutex::default(),
            stats: CacheStats::default(),
            write_failed: AtomicBool::new(false),
        })
    }

    /// Bytes held on disk now.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn path(&self, id: BlockId) -> PathBuf {
        self.dir
            .join(format!("{}-{}", hex::encode(id.object), id.block))
    }

    /// The bytes of `ranges` of the object `meta` names, from disk where cached, the rest
    /// fetched from `store` (in whole blocks, which are then kept).
    pub async fn read_ranges(
        &self,
        store: &dyn ObjectStore,
        meta: &ObjectMeta,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let size = meta.size;
        if ranges.iter().any(|r| r.end > size || r.start > r.end) {
            // Not what the plan says the file holds: let the store answer (and complain).
            return store.get_ranges(&meta.location, ranges).await;
        }
        let object = object_id(meta);
        let wanted: BTreeSet<u64> = ranges
            .iter()
            .filter(|r| r.start < r.end)
            .flat_map(|r| r.start / BLOCK..=(r.end - 1) / BLOCK)
            .collect();
        let mut blocks: HashMap<u64, Bytes> = HashMap::with_capacity(wanted.len());
        let mut missing = Vec::new();
        for &block in &wanted {
            match self.load(BlockId { object, block }).await {
                Some(bytes) => {
                    blocks.insert(block, bytes);
                }
                None => missing.push(block),
            }
        }
        self.stats
            .hits
            .fetch_add(blocks.len() as u64, Ordering::Relaxed);
        self.stats
            .misses
            .fetch_add(missing.len() as u64, Ordering::Relaxed);
        if !missing.is_empty() {
            // Runs of consecutive missing blocks, each one request (fetched concurrently).
            let mut runs: Vec<Range<u64>> = Vec::new();
            for block in missing {
                match runs.last_mut() {
                    Some(run) if run.end == block && run.end - run.start < MAX_RUN => run.end += 1,
                    _ => runs.push(block..block + 1),
                }
            }
            let byte_ranges: Vec<Range<u64>> = runs
                .iter()
                .map(|run| run.start * BLOCK..(run.end * BLOCK).min(size))
                .collect();
            let fetched = store.get_ranges(&meta.location, &byte_ranges).await?;
            for (run, data) in runs.into_iter().zip(fetched) {
                for (i, block) in run.enumerate() {
                    let start = (i as u64 * BLOCK) as usize;
                    let end = (start + BLOCK as usize).min(data.len());
                    let bytes = data.slice(start.min(end)..end);
                    self.keep(BlockId { object, block }, &bytes).await;
                    blocks.insert(block, bytes);
                }
            }
        }
        Ok(ranges
            .iter()
            .map(|range| assemble(&blocks, range.clone()))
            .collect())
    }

    async fn load(&self, id: BlockId) -> Option<Bytes> {
        let len = self.lock().touch(id)?;
        match tokio::fs::read(self.path(id)).await {
            Ok(data) if data.len() as u64 == len => Some(Bytes::from(data)),
            _ => {
                // Evicted meanwhile, or damaged: fetch it again.
                self.lock().forget(id);
                None
            }
        }
    }

    async fn keep(&self, id: BlockId, bytes: &Bytes) {
        if bytes.len() as u64 > self.capacity {
            return;
        }
        let path = self.path(id);
        let partial = path.with_extension(format!("part{}", rand::random::<u32>()));
        let written = async {
            tokio::fs::write(&partial, bytes).await?;
            tokio::fs::rename(&partial, &path).await
        }
        .await;
        if let Err(e) = written {
            let _ = tokio::fs::remove_file(&partial).await;
            if !self.write_failed.swap(true, Ordering::Relaxed) {
                tracing::warn!(dir = %self.dir.display(), error = %e,
                    "the data cache could not write a block; reads go to object storage");
            }
            return;
        }
        let evicted = self.lock().insert(id, bytes.len() as u64, self.capacity);
        for old in evicted {
            let _ = tokio::fs::remove_file(self.path(old)).await;
        }
    }
}

/// `range` of an object out of its cached blocks (all present).
fn assemble(blocks: &HashMap<u64, Bytes>, range: Range<u64>) -> Bytes {
    if range.start >= range.end {
        return Bytes::new();
    }
    let (first, last) = (range.start / BLOCK, (range.end - 1) / BLOCK);
    let slice = |block: u64| {
        let data = &blocks[&block];
        let base = block * BLOCK;
        let start = range.start.max(base) - base;
        let end = (range.end.min(base + BLOCK) - base).min(data.len() as u64);
        data.slice(start as usize..end.max(start) as usize)
    };
    if first == last {
        return slice(first);
    }
    let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
    for block in first..=last {
        out.extend_from_slice(&slice(block));
    }
    out.freeze()
}

/// An object's identity in the cache: the version the plan names.
fn object_id(meta: &ObjectMeta) -> ObjectId {
    let mut hasher = Sha256::new();
    planner::cache_key::hash_object_version(&mut hasher, meta);
    let digest = hasher.finalize();
    let mut id = [0; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

/// `plan` with every Parquet scan of remote files reading through `cache`.
pub fn attach(
    plan: Arc<dyn ExecutionPlan>,
    cache: &Arc<DataCache>,
    ctx: &TaskContext,
) -> DfResult<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let Some(exec) = node.downcast_ref::<DataSourceExec>() else {
            return Ok(Transformed::no(node));
        };
        let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>() else {
            return Ok(Transformed::no(node));
        };
        let Some(parquet) = config.file_source().downcast_ref::<ParquetSource>() else {
            return Ok(Transformed::no(node));
        };
        if config.object_store_url.as_str().starts_with("file:") {
            return Ok(Transformed::no(node));
        }
        let store = ctx.runtime_env().object_store(&config.object_store_url)?;
        let source = parquet
            .clone()
            .with_parquet_file_reader_factory(Arc::new(CachedReaders {
                store,
                cache: cache.clone(),
            }));
        let config = FileScanConfigBuilder::from(config.clone())
            .with_source(Arc::new(source))
            .build();
        Ok(Transformed::yes(
            Arc::new(DataSourceExec::new(Arc::new(config))) as Arc<dyn ExecutionPlan>,
        ))
    })
    .map(|t| t.data)
}

/// Opens Parquet files through the cache.
#[derive(Debug)]
struct CachedReaders {
    store: Arc<dyn ObjectStore>,
    cache: Arc<DataCache>,
}

impl ParquetFileReaderFactory for CachedReaders {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> DfResult<Box<dyn AsyncFileReader + Send>> {
        let metrics =
            ParquetFileMetrics::new(partition_index, file.object_meta.location.as_ref(), metrics);
        Ok(Box::new(CachedReader {
            store: self.store.clone(),
            cache: self.cache.clone(),
            meta: file.object_meta,
            metadata_size_hint,
            bytes_scanned: metrics.bytes_scanned,
        }))
    }
}

struct CachedReader {
    store: Arc<dyn ObjectStore>,
    cache: Arc<DataCache>,
    meta: ObjectMeta,
    metadata_size_hint: Option<usize>,
    bytes_scanned: Count,
}

impl CachedReader {
    async fn read(&self, ranges: &[Range<u64>]) -> Result<Vec<Bytes>, ParquetError> {
        let total: u64 = ranges.iter().map(|r| r.end.saturating_sub(r.start)).sum();
        self.bytes_scanned.add(total as usize);
        self.cache
            .read_ranges(self.store.as_ref(), &self.meta, ranges)
            .await
            .map_err(|e| ParquetError::External(Box::new(e)))
    }
}

impl AsyncFileReader for CachedReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, Result<Bytes, ParquetError>> {
        async move {
            let mut parts = self.read(std::slice::from_ref(&range)).await?;
            Ok(parts.pop().unwrap_or_default())
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, Result<Vec<Bytes>, ParquetError>> {
        async move { self.read(&ranges).await }.boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, Result<Arc<ParquetMetaData>, ParquetError>> {
        async move {
            let mut reader =
                ParquetMetaDataReader::new().with_prefetch_hint(self.metadata_size_hint);
            if let Some(options) = options {
                reader = reader
                    .with_column_index_policy(options.column_index_policy())
                    .with_offset_index_policy(options.offset_index_policy());
            }
            let size = self.meta.size;
            let location = self.meta.location.clone();
            reader
                .load_and_finish(&mut *self, size)
                .await
                .map(Arc::new)
                .map_err(|e| {
                    ParquetError::General(format!("reading the footer of {location}: {e}"))
                })
        }
        .boxed()
    }
}

/// Remove what a worker's cache left behind in `dir` (called once it exited).
pub fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::path::Path as ObjectPath;
    use object_store::{ObjectStoreExt, PutPayload};

    async fn object(store: &InMemory, name: &str, len: usize) -> (ObjectMeta, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let path = ObjectPath::from(name);
        store
            .put(&path, PutPayload::from(data.clone()))
            .await
            .expect("test setup");
        (store.head(&path).await.expect("test setup"), data)
    }

    fn cache(dir: &Path, capacity: u64) -> DataCache {
        DataCache::open(&DataCacheConfig {
            dir: dir.join("cache"),
            capacity,
        })
        .expect("test setup")
    }

    #[tokio::test]
    async fn ranges_across_blocks_come_back_exact_and_repeats_hit() {
        let dir = tempfile::tempdir().expect("test setup");
        let store = InMemory::new();
        let (meta, data) = object(&store, "t/a.parquet", (2 * BLOCK + 1234) as usize).await;
        let cache = cache(dir.path(), 64 * BLOCK);
        let ranges = vec![
            0..8,
            BLOCK - 10..BLOCK + 10,
            2 * BLOCK..2 * BLOCK + 1234,
            5..5,
        ];
        for round in 0..2 {
            let got = cache
                .read_ranges(&store, &meta, &ranges)
                .await
                .expect("test setup");
            for (r, bytes) in ranges.iter().zip(&got) {
                assert_eq!(&bytes[..], &data[r.start as usize..r.end as usize], "{r:?}");
            }
            let (hits, misses) = (
                cache.stats.hits.load(Ordering::Relaxed),
                cache.stats.misses.load(Ordering::Relaxed),
            );
            assert_eq!((hits, misses), if round == 0 { (0, 3) } else { (3, 3) });
        }
        assert_eq!(cache.bytes(), meta.size);
    }

    #[tokio::test]
    async fn a_rewritten_object_is_a_new_entry() {
        let dir = tempfile::tempdir().expect("test setup");
        let store = InMemory::new();
        let (old, _) = object(&store, "t/a.parquet", 100).await;
        let cache = cache(dir.path(), 64 * BLOCK);
        cache
            .read_ranges(&store, &old, std::slice::from_ref(&(0..100)))
            .await
            .expect("test setup");
        let (new, data) = object(&store, "t/a.parquet", 120).await;
        let got = cache
            .read_ranges(&store, &new, std::slice::from_ref(&(0..120)))
            .await
            .expect("test setup");
        assert_eq!(&got[0][..], &data[..]);
        assert_eq!(cache.stats.misses.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn the_least_recently_used_blocks_go_first() {
        let dir = tempfile::tempdir().expect("test setup");
        let store = InMemory::new();
        let (meta, _) = object(&store, "t/a.parquet", (4 * BLOCK) as usize).await;
        let cache = cache(dir.path(), 2 * BLOCK);
        for block in [0, 1, 0, 2] {
            let start = block * BLOCK;
            cache
                .read_ranges(&store, &meta, std::slice::from_ref(&(start..start + 1)))
                .await
                .expect("test setup");
        }
        // Block 1 was used least recently: evicted, and its file is gone.
        assert_eq!(cache.bytes(), 2 * BLOCK);
        let files = std::fs::read_dir(dir.path().join("cache"))
            .expect("test setup")
            .count();
        assert_eq!(files, 2);
        let before = cache.stats.hits.load(Ordering::Relaxed);
        cache
            .read_ranges(&store, &meta, std::slice::from_ref(&(0..1)))
            .await
            .expect("test setup");
        assert_eq!(cache.stats.hits.load(Ordering::Relaxed), before + 1);
        cache
            .read_ranges(&store, &meta, std::slice::from_ref(&(BLOCK..BLOCK + 1)))
            .await
            .expect("test setup");
        assert_eq!(cache.stats.hits.load(Ordering::Relaxed), before + 1);
    }
}
