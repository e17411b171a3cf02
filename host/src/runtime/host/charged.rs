//! The imports that take the guest's big strings and byte lists (a log line, a query, a state
//! value), linked again over the generated ones so that their size is checked against the
//! invocation's byte limit *before* the host copies them: the generated bindings would lift
//! (copy) the whole argument before the host function could look at it. Each wrapper reads the
//! argument's length in guest memory, traps past the limit, then copies it and calls the same
//! host function as the generated binding (which charges it as usual).

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, WasmList, WasmStr};

use super::super::Sandbox;
use super::super::bindings::{v0_1, v0_2};

/// Links the wrappers over both world versions' `log`, `metrics.query`, `metrics.query-range`
/// and `state.set`.
pub(super) fn add_to_linker(linker: &mut Linker<Sandbox>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    macro_rules! version {
        ($v:ident, $version:literal) => {{
            let mut log = linker.instance(concat!("scalehost:policy/log@", $version))?;
            log.func_wrap_async(
                "log",
                |mut store: StoreContextMut<'_, Sandbox>,
                 (level, message): ($v::log::Level, WasmStr)| {
                    Box::new(async move {
                        let message = lift_str(&mut store, &message)?;
                        <Sandbox as $v::log::Host>::log(store.data_mut(), level, message).await?;
                        Ok(())
                    })
                },
            )?;
            let mut metrics = linker.instance(concat!("scalehost:policy/metrics@", $version))?;
            metrics.func_wrap_async(
                "query",
                |mut store: StoreContextMut<'_, Sandbox>, (promql,): (WasmStr,)| {
                    Box::new(async move {
                        let promql = lift_str(&mut store, &promql)?;
                        let answer =
                            <Sandbox as $v::metrics::Host>::query(store.data_mut(), promql).await?;
                        Ok((answer,))
                    })
                },
            )?;
            metrics.func_wrap_async(
                "query-range",
                |mut store: StoreContextMut<'_, Sandbox>,
                 (promql, start, end, step): (WasmStr, u64, u64, u64)| {
                    Box::new(async move {
                        let promql = lift_str(&mut store, &promql)?;
                        let answer = <Sandbox as $v::metrics::Host>::query_range(
                            store.data_mut(),
                            promql,
                            start,
                            end,
                            step,
                        )
                        .await?;
                        Ok((answer,))
                    })
                },
            )?;
            let mut state = linker.instance(concat!("scalehost:policy/state@", $version))?;
            state.func_wrap_async(
                "set",
                |mut store: StoreContextMut<'_, Sandbox>, (key, value): (WasmStr, WasmList<u8>)| {
                    Box::new(async move {
                        store.data_mut().check_room(value.len())?;
                        let key = lift_str(&mut store, &key)?;
                        let value = value.as_le_slice(&store).to_vec();
                        <Sandbox as $v::state::Host>::set(store.data_mut(), key, value).await
                    })
                },
            )?;
        }};
    }
    version!(v0_1, "0.1.0");
    version!(v0_2, "0.2.0");
    linker.allow_shadowing(false);
    Ok(())
}

/// The string in guest memory, copied only once its length fits the byte limit.
fn lift_str(store: &mut StoreContextMut<'_, Sandbox>, text: &WasmStr) -> wasmtime::Result<String> {
    let len = text.to_str(&*store)?.len();
    store.data_mut().check_room(len)?;
    Ok(text.to_str(&*store)?.into_owned())
}
