//! Ctrl-C / SIGTERM as a future, shared by every long-running command, so servers can
//! take "a shutdown future" and stop gracefully.

use tokio::sync::watch;

/// Resolves on the first Ctrl-C or SIGTERM.
pub async fn terminated() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// One shutdown signal fanned out to several servers.
#[derive(Debug, Clone)]
pub struct Shutdown {
    /// Flips to `true` once; every clone's [`Shutdown::wait`] then resolves.
    rx: watch::Receiver<bool>,
}

/// The sending half of [`Shutdown`].
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

impl Trigger {
    /// Stops every server holding a [`Shutdown`].
    pub fn fire(&self) {
        let _ = self.0.send(true);
    }
}

/// Creates a trigger and its first listener.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown { rx })
}

impl Shutdown {
    /// Resolves once the trigger fired (or was dropped).
    pub async fn wait(mut self) {
        let _ = self.rx.wait_for(|v| *v).await;
    }

    /// The underlying receiver (`true` once fired), for libraries that take one.
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }
}
