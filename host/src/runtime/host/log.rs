//! Host side of `log`: guest messages into the host log, tagged with tenant and binding.

use super::super::bindings::log::{Host, Level};
use super::super::{GuestLine, GuestStream, Sandbox};

impl Host for Sandbox {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.charge(message.len())?;
        let (tenant, binding) = (&*self.tenant, &*self.binding);
        let stream = match level {
            Level::Debug => {
                tracing::debug!(target: "scalehost::guest", tenant, binding, "{message}");
                GuestStream::Debug
            }
            Level::Info => {
                tracing::info!(target: "scalehost::guest", tenant, binding, "{message}");
                GuestStream::Info
            }
            Level::Warn => {
                tracing::warn!(target: "scalehost::guest", tenant, binding, "{message}");
                GuestStream::Warn
            }
            Level::Error => {
                tracing::error!(target: "scalehost::guest", tenant, binding, "{message}");
                GuestStream::Error
            }
        };
        self.logs.push(GuestLine { stream, message });
        Ok(())
    }
}
