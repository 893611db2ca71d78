//! A gate in front of `MasterService` that refuses heartbeats from unregistered chunkservers
//! before their (possibly huge) chunk reports are even decoded.
//!
//! A chunkserver names itself in the `shale-node-id` request metadata; the gate answers
//! NOT_FOUND at once unless that node is registered. The handler then checks that the body's
//! `node_id` is the same node. With TLS, only the chunkserver whose certificate registered that
//! node id may send its heartbeats (a forged empty full report would erase its replicas'
//! locations). Everything else passes through untouched, counted and timed per method
//! (`metrics`).
use super::Master;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::{BoxFuture, Service};
use tonic::server::NamedService;
use tonic::Status;

/// Metadata naming the chunkserver that sends a heartbeat.
pub const NODE_ID_METADATA: &str = "shale-node-id";
const HEARTBEAT_PATH: &str = "/shale.meta.v1.MasterService/Heartbeat";

#[derive(Clone)]
pub struct HeartbeatGate<S> {
    pub inner: S,
    pub master: Arc<Master>,
}

impl<S: NamedService> NamedService for HeartbeatGate<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<Request<Body>> for HeartbeatGate<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Response<Body>, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let method = super::metrics::method(req.uri().path());
        let started = std::time::Instant::now();
        if super::metrics::is_client_request(method) {
            self.master
                .client_requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if req.uri().path() == HEARTBEAT_PATH {
            if let Err(s) = self.admit(&req) {
                super::metrics::rpc(method, started.elapsed(), false);
                return Box::pin(async move { Ok(s.into_http()) });
            }
        }
        let fut = self.inner.call(req);
        Box::pin(async move {
            let r = fut.await;
            if let Ok(resp) = &r {
                // An error is a trailers-only response: its status is in the head.
                let ok = resp
                    .headers()
                    .get("grpc-status")
                    .is_none_or(|v| v.as_bytes() == b"0");
                super::metrics::rpc(method, started.elapsed(), ok);
            }
            r
        })
    }
}

impl<S> HeartbeatGate<S> {
    fn admit(&self, req: &Request<Body>) -> Result<(), Status> {
        let node = req
            .headers()
            .get(NODE_ID_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| {
                Status::invalid_argument(format!(
                    "a heartbeat must name its chunkserver in the `{NODE_ID_METADATA}` metadata"
                ))
            })?;
        let g = self.master.sm.read();
        if g.state.server(shale_proto::NodeId(node)).is_none() {
            return Err(Status::not_found(format!(
                "chunkserver {node} is not registered; register first"
            )));
        }
        // Only the chunkserver that registered a node id speaks for it.
        let identity = req
            .extensions()
            .get::<shale_security::Peer>()
            .map(|p| &p.identity);
        if let Some(shale_security::Identity::Principal(p)) = identity {
            if p.role != shale_security::Role::Chunkserver {
                return Err(Status::permission_denied(format!(
                    "{p} may not send chunkserver heartbeats"
                )));
            }
            if let Some(bound) = g.state.server_principal(shale_proto::NodeId(node)) {
                if bound != p.name {
                    return Err(Status::permission_denied(format!(
                        "chunkserver {node} registered as chunkserver {bound}; {p} may not \
                         speak for it"
                    )));
                }
            }
        }
        Ok(())
    }
}
