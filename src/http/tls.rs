//! The TLS listener: the certificate in use is swapped on SIGHUP (new
//! connections get the new one, open ones keep theirs); a certificate that
//! does not load is refused and the one in use stays.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::TlsFiles;

/// The configuration new TLS connections are accepted with.
#[derive(Debug)]
pub struct Tls {
    current: ArcSwap<rustls::ServerConfig>,
    cert_file: PathBuf,
    key_file: PathBuf,
}

impl Tls {
    pub fn load(files: &TlsFiles) -> Result<Self, String> {
        let cfg = crate::crypto::tls_server_config(&files.cert_file, &files.key_file)?;
        Ok(Tls {
            current: ArcSwap::from_pointee(cfg),
            cert_file: files.cert_file.clone(),
            key_file: files.key_file.clone(),
        })
    }

    /// Reads the files again; on error the configuration in use stays.
    pub fn reload(&self) -> Result<(), String> {
        let cfg = crate::crypto::tls_server_config(&self.cert_file, &self.key_file)?;
        self.current.store(Arc::new(cfg));
        Ok(())
    }

    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }

    /// Reloads the certificate on every SIGHUP (beside the configuration reload).
    pub fn reload_on_hangup(self: &Arc<Self>) {
        #[cfg(unix)]
        {
            let this = self.clone();
            let Ok(mut hup) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            else {
                tracing::warn!("cannot listen for SIGHUP: the TLS certificate is not reloaded");
                return;
            };
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    match this.reload() {
                        Ok(()) => tracing::info!(
                            cert = %this.cert_file.display(),
                            "TLS certificate reloaded; new connections use it"
                        ),
                        Err(e) => tracing::error!(
                            error = %e,
                            "TLS certificate not reloaded; the one in use stays"
                        ),
                    }
                }
            });
        }
    }
}
