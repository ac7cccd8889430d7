//! PLACEHOLDER while the real backend is written (replaced before commit).
use secrecy::SecretString;
use serde_json::Value;
#[derive(Debug)]
pub struct PostgresBackendConfig {
    pub admin_url: SecretString,
    pub credentials_host: Option<String>,
    pub credentials_port: Option<u16>,
    pub name_prefix: String,
}
#[derive(Debug)]
pub struct PostgresBackend;
impl PostgresBackend {
    pub fn new(_c: PostgresBackendConfig) -> anyhow::Result<Self> {
        Ok(Self)
    }
}
pub fn check_plan_settings(_s: &Value) -> Vec<String> {
    vec![]
}
#[async_trait::async_trait]
impl super::ServiceBackend for PostgresBackend {
    fn check_plan_settings(&self, s: &Value) -> Vec<String> {
        check_plan_settings(s)
    }
    async fn provision(&self, _i: &super::InstanceSpec<'_>) -> Result<(), super::BackendError> {
        Ok(())
    }
    async fn update(&self, _c: &super::UpdateSpec<'_>) -> Result<(), super::BackendError> {
        Ok(())
    }
    async fn deprovision(&self, _i: &super::InstanceSpec<'_>) -> Result<(), super::BackendError> {
        Ok(())
    }
    async fn bind(
        &self,
        _b: &super::BindingSpec<'_>,
    ) -> Result<super::Credentials, super::BackendError> {
        Ok(super::Credentials::default())
    }
    async fn unbind(&self, _b: &super::BindingSpec<'_>) -> Result<(), super::BackendError> {
        Ok(())
    }
}
