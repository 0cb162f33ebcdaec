//! Connections to workers' distributed endpoints (the library's worker service): one
//! HTTP/2 channel per worker, reused by every query, each call carrying the worker secret,
//! TLS when the worker speaks it. The gateway has one per warehouse; each worker one for
//! the stages that read from other workers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::common::DataFusionError;
use datafusion_distributed::grpc::{create_worker_client, BoxCloneSyncChannel};
use datafusion_distributed::{ChannelResolver, WorkerChannel};
use planner::{ErrorKind, QueryError};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use url::Url;

use crate::protocol::STREAM_WINDOW_BYTES;

/// TLS of the connections to workers' distributed endpoints (PEM contents).
#[derive(Clone, Debug)]
pub struct ChannelTls {
    pub ca: Vec<u8>,
    /// The name the workers' certificates carry (default: each URL's host).
    pub domain: Option<String>,
    /// Client certificate and key, for workers that require them (mutual TLS).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Connections to workers' distributed endpoints: one HTTP/2 channel per worker, reused by
/// every query, each call carrying the worker secret.
#[derive(Clone)]
pub struct Channels {
    inner: Arc<ChannelsInner>,
}

struct ChannelsInner {
    bearer: http::HeaderValue,
    tls: Option<ChannelTls>,
    cache: Mutex<HashMap<Url, BoxCloneSyncChannel>>,
}

impl Channels {
    pub fn new(secret: &str, tls: Option<ChannelTls>) -> Result<Self, QueryError> {
        let bearer = http::HeaderValue::from_str(&format!("Bearer {secret}")).map_err(|_| {
            QueryError::new(ErrorKind::InvalidValue, "the worker secret must be ASCII")
        })?;
        Ok(Self {
            inner: Arc::new(ChannelsInner {
                bearer,
                tls,
                cache: Mutex::default(),
            }),
        })
    }

    fn channel(&self, url: &Url) -> Result<BoxCloneSyncChannel, DataFusionError> {
        let mut cache = self.inner.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = cache.get(url) {
            return Ok(channel.clone());
        }
        // The warehouse's settings, not the statement: the workers cannot be reached.
        let bad = |what: String| {
            DataFusionError::External(Box::new(QueryError::new(ErrorKind::Unavailable, what)))
        };
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| bad(format!("worker address {url}: {e}")))?
            .tcp_nodelay(true)
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(STREAM_WINDOW_BYTES * 4)
            .connect_timeout(Duration::from_secs(2))
            // A worker whose host vanished (no RST) is noticed within ~2 s.
            .http2_keep_alive_interval(Duration::from_secs(1))
            .keep_alive_timeout(Duration::from_secs(1))
            .keep_alive_while_idle(true);
        if url.scheme() == "https" {
            let Some(tls) = &self.inner.tls else {
                return Err(bad(format!("no TLS settings to reach the worker at {url}")));
            };
            let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
            let mut config = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&tls.ca))
                .domain_name(tls.domain.clone().unwrap_or_else(|| host.to_string()));
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| bad(format!("worker TLS: {e}")))?;
        }
        let bearer = self.inner.bearer.clone();
        let service = tower::ServiceExt::map_request(
            endpoint.connect_lazy(),
            move |mut request: http::Request<tonic::body::Body>| {
                request
                    .headers_mut()
                    .insert(http::header::AUTHORIZATION, bearer.clone());
                request
            },
        );
        let channel = BoxCloneSyncChannel::new(service);
        cache.insert(url.clone(), channel.clone());
        Ok(channel)
    }

    /// Forget a worker's connection (it went away: a new one at that address is new).
    pub fn forget(&self, url: &Url) {
        self.inner
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(url);
    }
}

#[async_trait]
impl ChannelResolver for Channels {
    async fn get_worker_client_for_url(
        &self,
        url: &Url,
    ) -> Result<Box<dyn WorkerChannel>, DataFusionError> {
        self.channel(url).map(create_worker_client)
    }
}
