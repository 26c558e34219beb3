//! The control socket: the agent's end of `meshfwd show ...` (the
//! contract is `crate::api`), and the client the CLI uses.
//!
//! A Unix stream socket, owner-only (0600; the agent runs as root, so only
//! root may ask). The server side only moves requests to the agent's main
//! loop over a channel ([`Pending`]), so the answer always comes from the
//! one place that owns the state.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};

use crate::api::{Answer, Instance, Query, Reply, Request};

/// Longest request line accepted.
const MAX_REQUEST: usize = 4096;
/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A request waiting for the main loop's answer.
#[derive(Debug)]
pub struct Pending {
    pub query: Query,
    pub instance: Instance,
    pub reply: oneshot::Sender<Result<Answer, String>>,
}

/// Bind the socket at `path` with mode 0600, replacing a stale socket file
/// but refusing to steal one a live agent is serving.
///
/// The socket is bound under a temporary name, restricted, then renamed
/// into place, so it is never reachable with looser permissions.
pub fn bind(path: &Path) -> Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another agent is already serving {} (stop it first)",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    let tmp = temp_name(path);
    let _ = std::fs::remove_file(&tmp);
    let listener =
        UnixListener::bind(&tmp).with_context(|| format!("binding {}", tmp.display()))?;
    let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("placing the control socket at {}", path.display()));
    }
    Ok(listener)
}

fn temp_name(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}.tmp", std::process::id()));
    path.with_file_name(name)
}

/// Accept connections forever, handing each request to `tx`.
pub async fn serve(listener: UnixListener, tx: mpsc::Sender<Pending>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(handle(stream, tx.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(stream: UnixStream, tx: mpsc::Sender<Pending>) {
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    let mut rd = tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(rd, MAX_REQUEST as u64));
    let reply = match tokio::time::timeout(REQUEST_TIMEOUT, rd.read_line(&mut line)).await {
        Err(_) => Reply::err("timed out waiting for the request"),
        Ok(Err(e)) => Reply::err(format!("reading the request: {e}")),
        Ok(Ok(_)) => match serde_json::from_str::<Request>(line.trim()) {
            Err(e) => Reply::err(format!("bad request: {e}")),
            Ok(req) => {
                let (reply_tx, reply_rx) = oneshot::channel();
                if tx
                    .send(Pending {
                        query: req.show,
                        instance: req.instance,
                        reply: reply_tx,
                    })
                    .await
                    .is_err()
                {
                    Reply::err("the agent is shutting down")
                } else {
                    match reply_rx.await {
                        Ok(Ok(answer)) => match answer.to_json() {
                            Ok(data) => Reply {
                                ok: true,
                                data: Some(data),
                                error: None,
                            },
                            Err(e) => Reply::err(format!("encoding the answer: {e}")),
                        },
                        Ok(Err(e)) => Reply::err(e),
                        Err(_) => Reply::err("the agent dropped the request"),
                    }
                }
            }
        },
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
    out.push(b'\n');
    let _ = wr.write_all(&out).await;
    let _ = wr.shutdown().await;
}

impl Reply {
    fn err(e: impl Into<String>) -> Self {
        Reply {
            ok: false,
            data: None,
            error: Some(e.into()),
        }
    }
}

/// Ask the agent at `socket` (blocking; for the CLI).
pub fn query(socket: &Path, request: Request, timeout: Duration) -> Result<Answer> {
    let query = request.show;
    let mut stream = std::os::unix::net::UnixStream::connect(socket).with_context(|| {
        format!(
            "cannot reach the agent at {} (is `meshfwd agent` running? see --socket)",
            socket.display()
        )
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_vec(&request)?;
    line.push(b'\n');
    stream.write_all(&line).context("sending the request")?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .context("reading the agent's answer")?;
    let reply: Reply =
        serde_json::from_str(answer.trim()).context("the agent's answer is not valid JSON")?;
    match (reply.ok, reply.data, reply.error) {
        (true, Some(data), _) => Answer::from_json(query, data).context(
            "the agent's answer does not have the shape this CLI expects (another version?)",
        ),
        (true, None, _) => bail!("the agent answered without data"),
        (false, _, e) => bail!(
            "the agent refused: {}",
            e.unwrap_or_else(|| "no reason given".into())
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileTypeExt as _;

    use super::*;

    #[tokio::test]
    async fn round_trip_with_owner_only_socket() {
        let dir = std::env::temp_dir().join(format!("meshfwd-control-{}", std::process::id()));
        let path = dir.join("agent.sock");
        let listener = bind(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // A second agent must not take the socket over.
        assert!(bind(&path).is_err());

        let (tx, mut rx) = mpsc::channel(4);
        tokio::spawn(serve(listener, tx));
        tokio::spawn(async move {
            while let Some(p) = rx.recv().await {
                let answer = match p.query {
                    Query::Routes => Ok(Answer::Routes(Vec::new())),
                    _ => Err("not yet".to_string()),
                };
                let _ = p.reply.send(answer);
            }
        });
        let p = path.clone();
        let routes = tokio::task::spawn_blocking(move || {
            query(&p, Request::new(Query::Routes), Duration::from_secs(5))
        })
        .await
        .unwrap();
        assert_eq!(routes.unwrap(), Answer::Routes(Vec::new()));
        let p = path.clone();
        let err = tokio::task::spawn_blocking(move || {
            query(&p, Request::new(Query::Lsdb), Duration::from_secs(5))
        })
        .await
        .unwrap();
        assert!(err.unwrap_err().to_string().contains("not yet"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stale_socket_file_is_replaced() {
        let dir =
            std::env::temp_dir().join(format!("meshfwd-control-stale-{}", std::process::id()));
        let path = dir.join("agent.sock");
        std::fs::create_dir_all(&dir).unwrap();
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap()); // file stays, nobody listens
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async { bind(&path).unwrap() });
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
