//! Custom health checks in Lua (`health.lua` from `argocd-cm`), run in a fresh sandboxed Lua
//! 5.1 state per call, as Argo CD runs them: `obj` in, `{status, message}` out, bounded in time.

use std::time::{Duration, Instant};

use mlua::{HookTriggers, Lua, LuaOptions, LuaSerdeExt, StdLib, VmState};
use serde_json::Value;

use crate::health::{Health, HealthCode};

/// How long one script may run (Argo CD's limit is one second as well).
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(1);
/// Memory one script's state may use.
const MEMORY_LIMIT: usize = 32 << 20;
/// Instructions between two clock checks.
const CHECK_EVERY: u32 = 10_000;

/// Why a script gave no verdict.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LuaError {
    #[error("health.lua did not finish within {0:?} and was stopped")]
    Timeout(Duration),
    #[error("health.lua failed: {0}")]
    Script(String),
    #[error("health.lua returned {0}, not a table with a valid status")]
    Result(String),
}

/// Run `script` on `obj`. Without `open_libs` the script sees Lua's base, `table`, `string`
/// and `math` libraries and an `os` holding only `time`, `date` and `clock` (what Argo CD's
/// sandbox offers; `require` returns those only, and `dofile`/`loadfile` are gone). With
/// `open_libs` (`useOpenLibs`), every standard library but `debug`, as in Argo CD.
pub fn run(
    script: &str,
    obj: &Value,
    open_libs: bool,
    budget: Duration,
) -> Result<Health, LuaError> {
    let lua = sandbox(open_libs).map_err(|e| LuaError::Script(e.to_string()))?;
    let deadline = Instant::now() + budget;
    // `pcall` must not swallow the budget: once it is spent, every protected call fails again.
    for name in ["pcall", "xpcall"] {
        let inner: mlua::Function = lua
            .globals()
            .get(name)
            .map_err(|e| LuaError::Script(e.to_string()))?;
        let guarded = lua
            .create_function(move |_, args: mlua::MultiValue| {
                let out = inner.call::<mlua::MultiValue>(args)?;
                if Instant::now() > deadline {
                    return Err(mlua::Error::runtime(TIMED_OUT));
                }
                Ok(out)
            })
            .map_err(|e| LuaError::Script(e.to_string()))?;
        lua.globals()
            .set(name, guarded)
            .map_err(|e| LuaError::Script(e.to_string()))?;
    }
    lua.set_hook(
        HookTriggers::new().every_nth_instruction(CHECK_EVERY),
        move |_, _| {
            if Instant::now() > deadline {
                Err(mlua::Error::runtime(TIMED_OUT))
            } else {
                Ok(VmState::Continue)
            }
        },
    )
    .map_err(|e| LuaError::Script(e.to_string()))?;
    let input = lua
        .to_value_with(
            obj,
            mlua::serde::SerializeOptions::new()
                .serialize_none_to_null(false)
                .serialize_unit_to_null(false),
        )
        .map_err(|e| LuaError::Script(e.to_string()))?;
    lua.globals()
        .set("obj", input)
        .map_err(|e| LuaError::Script(e.to_string()))?;
    let out = lua
        .load(script)
        .set_name("=health.lua")
        .eval::<mlua::Value>()
        .map_err(|e| {
            let text = e.to_string();
            if text.contains(TIMED_OUT) {
                LuaError::Timeout(budget)
            } else {
                LuaError::Script(first_line(&text))
            }
        })?;
    verdict(&out)
}

const TIMED_OUT: &str = "flotilla: health.lua time budget exhausted";

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

fn sandbox(open_libs: bool) -> mlua::Result<Lua> {
    if open_libs {
        let lua = Lua::new_with(StdLib::ALL_SAFE, LuaOptions::default())?;
        lua.set_memory_limit(MEMORY_LIMIT)?;
        return Ok(lua);
    }
    let lua = Lua::new_with(
        StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::OS,
        LuaOptions::default(),
    )?;
    lua.set_memory_limit(MEMORY_LIMIT)?;
    let g = lua.globals();
    let os: mlua::Table = g.get("os")?;
    let safe_os = lua.create_table()?;
    for name in ["time", "date", "clock"] {
        safe_os.set(name, os.get::<mlua::Value>(name)?)?;
    }
    g.set("os", safe_os)?;
    // Files, bytecode (Lua 5.1's loader trusts it), and finalizers (`newproxy` userdata with
    // `__gc` would run after the budget) are out.
    for name in ["dofile", "loadfile", "load", "loadstring", "newproxy"] {
        g.set(name, mlua::Value::Nil)?;
    }
    let string: mlua::Table = g.get("string")?;
    string.set("dump", mlua::Value::Nil)?;
    bound_patterns(&lua, &string)?;
    // `local os = require("os")` works as in Argo CD; nothing else is loadable.
    let require = lua.create_function(|lua, name: String| match name.as_str() {
        "os" | "string" | "table" | "math" => lua.globals().get::<mlua::Value>(name),
        _ => Err(mlua::Error::runtime(format!(
            "module {name:?} is not available to health checks"
        ))),
    })?;
    g.set("require", require)?;
    Ok(lua)
}

/// Longest subject and pattern the pattern functions take. Lua's matcher runs in C, out of
/// the instruction hook's reach, and recurses per pattern item: bounded inputs keep one call
/// short and its stack shallow.
const MAX_SUBJECT: usize = 256 << 10;
const MAX_PATTERN: usize = 256;
/// A plain `find` is a naive substring search: any subject, a bounded needle.
const MAX_PLAIN_NEEDLE: usize = 4 << 10;

/// Wrap `string.find/match/gmatch/gsub` (and the `s:find(...)` methods, which share the table)
/// so that over-long subjects or patterns are an error, not a stalled worker.
fn bound_patterns(lua: &Lua, string: &mlua::Table) -> mlua::Result<()> {
    for name in ["find", "match", "gmatch", "gsub"] {
        let inner: mlua::Function = string.get(name)?;
        let plain_ok = name == "find";
        let wrapped = lua.create_function(move |_, args: mlua::MultiValue| {
            let text = |i: usize| match args.get(i) {
                Some(mlua::Value::String(s)) => s.as_bytes().len(),
                _ => 0,
            };
            let plain = plain_ok && args.get(3).is_some_and(|v| v.as_boolean() == Some(true));
            let refused = if plain {
                text(1) > MAX_PLAIN_NEEDLE
            } else {
                text(0) > MAX_SUBJECT || text(1) > MAX_PATTERN
            };
            if refused {
                return Err(mlua::Error::runtime(format!(
                    "string.{name}: subject over {MAX_SUBJECT} bytes or pattern over {MAX_PATTERN} bytes (plain find: {MAX_PLAIN_NEEDLE})"
                )));
            }
            inner.call::<mlua::MultiValue>(args)
        })?;
        string.set(name, wrapped)?;
    }
    Ok(())
}

fn verdict(out: &mlua::Value) -> Result<Health, LuaError> {
    let mlua::Value::Table(t) = out else {
        return Err(LuaError::Result(out.type_name().to_string()));
    };
    let status: Option<String> = t.get("status").ok();
    let message: Option<String> = t.get("message").ok();
    let code = match status.as_deref() {
        Some("Healthy") => HealthCode::Healthy,
        Some("Progressing") => HealthCode::Progressing,
        Some("Suspended") => HealthCode::Suspended,
        Some("Degraded") => HealthCode::Degraded,
        Some("Missing") => HealthCode::Missing,
        Some("Unknown") => HealthCode::Unknown,
        other => {
            return Err(LuaError::Result(format!(
                "status {:?}",
                other.unwrap_or("(none)")
            )));
        }
    };
    Ok(Health {
        code,
        message: message.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CERT: &str = r#"
hs = {}
if obj.status ~= nil and obj.status.conditions ~= nil then
  for i, condition in ipairs(obj.status.conditions) do
    if condition.type == "Ready" and condition.status == "False" then
      hs.status = "Degraded"
      hs.message = condition.message
      return hs
    end
    if condition.type == "Ready" and condition.status == "True" then
      hs.status = "Healthy"
      hs.message = condition.message
      return hs
    end
  end
end
hs.status = "Progressing"
hs.message = "Waiting for certificate"
return hs
"#;

    #[test]
    fn a_script_reads_obj_and_returns_a_verdict() {
        let h = run(CERT, &json!({"kind": "Certificate"}), false, DEFAULT_BUDGET).expect("runs");
        assert_eq!(h.code, HealthCode::Progressing);
        assert_eq!(h.message, "Waiting for certificate");
        let ready = json!({"status": {"conditions": [
            {"type": "Ready", "status": "True", "message": "Certificate is up to date"}]}});
        let h = run(CERT, &ready, false, DEFAULT_BUDGET).expect("runs");
        assert_eq!(
            (h.code, h.message.as_str()),
            (HealthCode::Healthy, "Certificate is up to date")
        );
    }

    #[test]
    fn json_null_is_nil_and_os_time_works() {
        let script = r#"
local os = require("os")
hs = {}
if obj.spec.paused == nil and os.time() > 0 then hs.status = "Healthy" else hs.status = "Suspended" end
return hs"#;
        let h = run(
            script,
            &json!({"spec": {"paused": null}}),
            false,
            DEFAULT_BUDGET,
        )
        .expect("runs");
        assert_eq!(h.code, HealthCode::Healthy);
    }

    #[test]
    fn a_runaway_script_is_stopped_by_the_budget() {
        let t = Instant::now();
        let e = run(
            "while true do end",
            &json!({}),
            false,
            Duration::from_millis(100),
        )
        .expect_err("stopped");
        assert_eq!(e, LuaError::Timeout(Duration::from_millis(100)));
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }

    #[test]
    fn pcall_cannot_swallow_the_budget() {
        let e = run(
            "while true do pcall(function() while true do end end) end",
            &json!({}),
            false,
            Duration::from_millis(100),
        )
        .expect_err("stopped");
        assert_eq!(e, LuaError::Timeout(Duration::from_millis(100)));
    }

    #[test]
    fn bytecode_finalizers_and_huge_patterns_are_refused() {
        for script in [
            "return loadstring('return 1')()",
            "return load(function() return nil end)",
            "return string.dump(function() end)",
            "return newproxy(true)",
            "return string.rep('a', 300000):find('(.-)(.-)(.-)x')",
            "return ('a'):find(string.rep('a?', 200000))",
        ] {
            let e = run(script, &json!({}), false, DEFAULT_BUDGET).expect_err(script);
            assert!(matches!(e, LuaError::Script(_)), "{script}: {e}");
        }
        // Plain finds of any size, and ordinary patterns, still work.
        let h = run(
            "local s = string.rep('x', 300000) .. 'Ready' if s:find('Ready', 1, true) and ('a-b'):match('(%a)-(%a)') then return {status='Healthy'} end",
            &json!({}),
            false,
            DEFAULT_BUDGET,
        )
        .expect("runs");
        assert_eq!(h.code, HealthCode::Healthy);
    }

    #[test]
    fn memory_is_bounded() {
        let e = run(
            "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1024) .. i end",
            &json!({}),
            false,
            Duration::from_secs(30),
        )
        .expect_err("stopped");
        assert!(
            matches!(e, LuaError::Script(ref m) if m.contains("memory")),
            "{e}"
        );
    }

    #[test]
    fn the_sandbox_has_no_files_processes_or_modules() {
        for script in [
            "return io.open('/etc/passwd')",
            "return os.execute('true')",
            "return dofile('/etc/passwd')",
            "return require('io')",
            "return os.getenv('HOME')",
        ] {
            let e = run(script, &json!({}), false, DEFAULT_BUDGET).expect_err(script);
            assert!(matches!(e, LuaError::Script(_)), "{script}: {e}");
        }
        // useOpenLibs opens the standard libraries, as Argo CD does.
        let h = run(
            "if io ~= nil and os.getenv ~= nil then return {status='Healthy'} end",
            &json!({}),
            true,
            DEFAULT_BUDGET,
        )
        .expect("runs");
        assert_eq!(h.code, HealthCode::Healthy);
    }

    #[test]
    fn errors_and_bad_results_are_named() {
        let e = run("error('boom')", &json!({}), false, DEFAULT_BUDGET).expect_err("fails");
        assert!(
            matches!(e, LuaError::Script(ref m) if m.contains("boom")),
            "{e}"
        );
        let e =
            run("return {status='Fine'}", &json!({}), false, DEFAULT_BUDGET).expect_err("fails");
        assert_eq!(e, LuaError::Result("status \"Fine\"".into()));
        let e = run("return 1", &json!({}), false, DEFAULT_BUDGET).expect_err("fails");
        assert_eq!(e, LuaError::Result("integer".into()));
    }
}
