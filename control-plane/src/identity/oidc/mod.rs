//! OpenID Connect logins (Entra ID, Google, any provider): the providers from config, the
//! browser-bound flow, ID token verification, and finding the person's user.

pub mod flow;
pub mod id_token;
pub mod linking;
pub mod provider;
pub mod settings;

use std::collections::BTreeMap;
use std::sync::Arc;

use provider::OidcProvider;
use settings::OidcSettings;

/// Why a login at a provider did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The provider cannot be reached, or answered nothing usable, in time.
    #[error("provider unavailable: {0}")]
    Unavailable(String),
    /// The provider refused the code, or its token does not prove the person.
    #[error("login refused: {0}")]
    Refused(String),
}

/// The enabled providers, by name.
#[derive(Default)]
pub struct OidcProviders {
    providers: BTreeMap<String, Arc<OidcProvider>>,
}

impl OidcProviders {
    pub fn new(settings: &[OidcSettings]) -> Result<Self, reqwest::Error> {
        let providers = settings
            .iter()
            .map(|s| Ok((s.name.clone(), Arc::new(OidcProvider::new(s.clone())?))))
            .collect::<Result<_, reqwest::Error>>()?;
        Ok(Self { providers })
    }

    pub fn get(&self, name: &str) -> Option<Arc<OidcProvider>> {
        self.providers.get(name).cloned()
    }
}
