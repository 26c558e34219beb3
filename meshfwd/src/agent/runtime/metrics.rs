//! The Prometheus endpoint: `GET /metrics` over HTTP, answered from the
//! same queries as the control socket (they go through the agent's loop
//! like any `meshfwd show`), rendered by [`crate::metrics`].

use std::{net::SocketAddr, time::Duration};

use axum::{Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use tokio::sync::{mpsc, oneshot};

use super::control::Pending;
use crate::{
    api::{Answer, Instance, Query},
    metrics::{CONTENT_TYPE, Snapshot, render},
};

/// How long a scrape waits for the agent's loop.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone)]
struct Ctx {
    tx: mpsc::Sender<Pending>,
    start_time_unix: f64,
}

/// Bind `addr` and serve until the task is aborted.
pub async fn bind(
    addr: SocketAddr,
    tx: mpsc::Sender<Pending>,
    start_time_unix: f64,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Ctx {
            tx,
            start_time_unix,
        });
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the metrics endpoint stopped");
        }
    }))
}

async fn ask(ctx: &Ctx, query: Query, instance: Instance) -> Result<Answer, String> {
    let (reply, rx) = oneshot::channel();
    ctx.tx
        .send(Pending {
            query,
            instance,
            reply,
        })
        .await
        .map_err(|_| "the agent is shutting down".to_owned())?;
    tokio::time::timeout(ANSWER_TIMEOUT, rx)
        .await
        .map_err(|_| "the agent did not answer in time".to_owned())?
        .map_err(|_| "the agent dropped the question".to_owned())?
}

async fn scrape(State(ctx): State<Ctx>) -> impl IntoResponse {
    let answers = async {
        let v6 = Instance::Ipv6;
        let Answer::Node(node) = ask(&ctx, Query::Node, v6).await? else {
            return Err("unexpected answer to node".to_owned());
        };
        let Answer::Neighbors(neighbors) = ask(&ctx, Query::Neighbors, v6).await? else {
            return Err("unexpected answer to neighbors".to_owned());
        };
        let neighbors4 = if node.ipv4.is_some() {
            let Answer::Neighbors(n) = ask(&ctx, Query::Neighbors, Instance::Ipv4).await? else {
                return Err("unexpected answer to IPv4 neighbors".to_owned());
            };
            n
        } else {
            Vec::new()
        };
        let Answer::Stats(stats) = ask(&ctx, Query::Stats, v6).await? else {
            return Err("unexpected answer to stats".to_owned());
        };
        let Answer::Bfd(bfd) = ask(&ctx, Query::Bfd, v6).await? else {
            return Err("unexpected answer to bfd".to_owned());
        };
        Ok((node, neighbors, neighbors4, stats, bfd))
    };
    match answers.await {
        Ok((node, neighbors, neighbors4, stats, bfd)) => {
            let text = render(&Snapshot {
                node: &node,
                neighbors: &neighbors,
                neighbors4: &neighbors4,
                stats: &stats,
                bfd: &bfd,
                start_time_unix: ctx.start_time_unix,
            });
            (StatusCode::OK, [("content-type", CONTENT_TYPE)], text).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e).into_response(),
    }
}
