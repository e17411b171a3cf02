//! Host side of `log`: guest messages into the host log (bounded per invocation), tagged with
//! tenant and binding, and into the invocation's result.

use super::super::bindings::log::{Host, Level};
use super::super::{GuestLine, GuestStream, Sandbox};

impl Host for Sandbox {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.charge(message.len())?;
        let stream = match level {
            Level::Debug => GuestStream::Debug,
            Level::Info => GuestStream::Info,
            Level::Warn => GuestStream::Warn,
            Level::Error => GuestStream::Error,
        };
        self.forward_to_host_log(stream, &message);
        self.logs.push(GuestLine { stream, message });
        Ok(())
    }
}
