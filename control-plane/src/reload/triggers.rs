//! What starts a reload: SIGHUP, and a change to the configuration file (watched through its
//! folder, since editors replace a file rather than write it in place), debounced so that
//! one save reloads once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_mini::notify::RecursiveMode;
use notify_debouncer_mini::{new_debouncer, DebounceEventResult};
use tokio::sync::mpsc;

use super::Reloader;

/// Changes to the file closer together than this reload once.
const FILE_DEBOUNCE: Duration = Duration::from_millis(300);

/// Reloads on every SIGHUP and, with a file, every change to it, until the process ends.
pub async fn run(reloader: Arc<Reloader>, file: Option<PathBuf>) {
    // One pending reload is enough: it reads whatever the file holds by then.
    let (wake, mut woken) = mpsc::channel::<()>(1);
    let _watch = file.and_then(|file| match watch(&file, wake.clone()) {
        Ok(watch) => Some(watch),
        Err(error) => {
            tracing::warn!(%error, file = %file.display(), "cannot watch the configuration file; SIGHUP still reloads it");
            None
        }
    });
    tokio::spawn(on_hangup(wake));
    while woken.recv().await.is_some() {
        reloader.reload().await;
    }
}

type Watch = notify_debouncer_mini::Debouncer<notify_debouncer_mini::notify::RecommendedWatcher>;

fn watch(file: &Path, wake: mpsc::Sender<()>) -> notify_debouncer_mini::notify::Result<Watch> {
    let name = file.file_name().map(ToOwned::to_owned);
    let mut debouncer = new_debouncer(FILE_DEBOUNCE, move |events: DebounceEventResult| {
        let ours = events.is_ok_and(|events| {
            events
                .iter()
                .any(|event| event.path.file_name() == name.as_deref())
        });
        if ours {
            // Full: a reload is already pending.
            let _ = wake.try_send(());
        }
    })?;
    let folder = match file.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    debouncer
        .watcher()
        .watch(folder, RecursiveMode::NonRecursive)?;
    Ok(debouncer)
}

async fn on_hangup(wake: mpsc::Sender<()>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(hangups) => hangups,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; configuration reloads only on file changes");
                return;
            }
        };
        while hangups.recv().await.is_some() {
            let _ = wake.try_send(());
        }
    }
    #[cfg(not(unix))]
    drop(wake);
}
