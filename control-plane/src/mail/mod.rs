//! Mail to people: the SMTP delivery (`lettre`) and the messages sent ([`letters`]).

pub mod letters;

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

pub use letters::Letter;

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailSecurity {
    /// Upgraded with STARTTLS before anything is sent; a server that cannot is refused.
    StartTls,
    /// TLS from the first byte.
    Tls,
    /// Plain text, for a relay on this host.
    None,
}

/// Where and how mail is delivered (`mail.*`, validated).
#[derive(Debug, Clone)]
pub struct MailSettings {
    pub host: String,
    pub port: u16,
    pub security: MailSecurity,
    pub credentials: Option<(String, String)>,
    pub from: Mailbox,
    /// The only CAs the server's certificate may chain to; `None`: the public roots.
    pub ca_pem: Option<Vec<u8>>,
    pub timeout: Duration,
}

/// Why a message was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("the SMTP server's TLS settings are unusable: {0}")]
    Tls(String),
    #[error("the message could not be built: {0}")]
    Message(String),
    #[error("the SMTP server did not take the message: {0}")]
    Delivery(String),
}

/// Tries of one message before it is given up.
const DELIVERY_TRIES: u32 = 3;

/// Delivers messages through the configured SMTP server.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    pub fn new(settings: &MailSettings) -> Result<Self, MailError> {
        let tls = match settings.security {
            MailSecurity::None => Tls::None,
            MailSecurity::StartTls => Tls::Required(tls_parameters(settings)?),
            MailSecurity::Tls => Tls::Wrapper(tls_parameters(settings)?),
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.as_str())
                .port(settings.port)
                .tls(tls)
                .timeout(Some(settings.timeout));
        if let Some((username, password)) = &settings.credentials {
            builder = builder.credentials(Credentials::new(username.clone(), password.clone()));
        }
        Ok(Self {
            transport: builder.build(),
            from: settings.from.clone(),
        })
    }

    /// Sends `letter` to `to`.
    pub async fn send(&self, to: &str, letter: Letter) -> Result<(), MailError> {
        let to: Mailbox = to.parse().map_err(|error: lettre::address::AddressError| {
            MailError::Message(error.to_string())
        })?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(letter.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(letter.body)
            .map_err(|error| MailError::Message(error.to_string()))?;
        self.transport
            .send(message)
            .await
            .map_err(|error| MailError::Delivery(error.to_string()))?;
        metrics::counter!("tollgate_mail_sent_total").increment(1);
        Ok(())
    }
}

impl Mailer {
    /// Sends `letter` to `to`, trying again after 1 s and 2 s when the server fails; a message
    /// still not taken is logged and counted (`tollgate_mail_failures_total`).
    pub async fn deliver(&self, to: &str, letter: Letter) {
        for attempt in 1..=DELIVERY_TRIES {
            match self.send(to, letter.clone()).await {
                Ok(()) => return,
                Err(error) if attempt < DELIVERY_TRIES => {
                    tracing::info!(%error, attempt, "cannot send mail now; trying again");
                    tokio::time::sleep(std::time::Duration::from_secs(1 << (attempt - 1))).await;
                }
                Err(error) => tracing::warn!(%error, "cannot send mail; the message is dropped"),
            }
        }
        metrics::counter!("tollgate_mail_failures_total").increment(1);
    }
}

fn tls_parameters(settings: &MailSettings) -> Result<TlsParameters, MailError> {
    let mut builder = TlsParameters::builder(settings.host.clone());
    if let Some(pem) = &settings.ca_pem {
        let ca = Certificate::from_pem(pem).map_err(|error| MailError::Tls(error.to_string()))?;
        builder = builder
            .certificate_store(CertificateStore::None)
            .add_root_certificate(ca);
    }
    builder
        .build_rustls()
        .map_err(|error| MailError::Tls(error.to_string()))
}
