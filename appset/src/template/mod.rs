//! Templates: an Application from the set's template and one parameter set, in both of Argo CD's
//! modes — fasttemplate (`{{param}}` over flattened string parameters) and Go `text/template`
//! with the Sprig functions Argo CD documents — plus `templatePatch` and the per-generator
//! `template` overrides (`merge_template`).
//!
//! Faithful to Argo CD's `applicationset/utils` (`Render.Replace`, `deeplyReplace`,
//! `applyTemplatePatch`, `mergeGeneratorTemplate`): every string leaf and every map key is
//! rendered; with no parameters at all nothing is rendered; unknown fasttemplate tags are left as
//! they are; Go templates print `<no value>` for a missing key unless `missingkey=error`.

mod engine;
mod fast;
mod merge;
mod sprig;
#[cfg(test)]
mod tests;

pub use merge::merge_template;

use serde_json::{Map, Value};

/// The largest Application (serialized as JSON) one render may produce; also the output budget
/// shared by all string leaves of one `render_value` call.
pub const MAX_APPLICATION_BYTES: usize = 1024 * 1024;

/// Total `{{range}}` iterations allowed per Go template execution.
pub const MAX_RANGE_ITERATIONS: u64 = 100_000;

/// The finalizer Argo CD puts on generated Applications that have none, unless the set's
/// `syncPolicy.preserveResourcesOnDeletion` is true.
pub const RESOURCES_FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";

/// Why a template could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A Go template that does not parse.
    #[error("failed to parse template {template:?}: {message}")]
    Parse { template: String, message: String },
    /// A Go template whose execution failed (missing key with `missingkey=error`, a function
    /// error, a type error, the range budget).
    #[error("failed to execute go template {template:?}: {message}")]
    Execute { template: String, message: String },
    /// A Sprig function Argo CD deletes from its function map so templates cannot read the
    /// controller's environment.
    #[error(
        "function {name:?} not defined: Argo CD removes it from ApplicationSet templates \
         (it would expose the controller's environment)"
    )]
    RemovedFunction { name: String },
    /// A Sprig function Argo CD offers that Flotilla does not implement (time, randomness,
    /// key generation, ...): refused rather than rendered wrongly.
    #[error("function {name:?} is not supported by Flotilla's ApplicationSet templates")]
    UnsupportedFunction { name: String },
    /// A function no template dialect defines.
    #[error("function {name:?} not defined")]
    UndefinedFunction { name: String },
    /// A `goTemplateOptions` entry that Go's `Template.Option` does not accept.
    #[error(
        "invalid goTemplateOptions entry {0:?} (accepted: missingkey=default|invalid|zero|error)"
    )]
    InvalidOption(String),
    /// fasttemplate: a `{{` with no `}}` after it.
    #[error("invalid template: cannot find end tag \"}}}}\" in {template:?}")]
    UnclosedTag { template: String },
    /// Output past `MAX_APPLICATION_BYTES`.
    #[error("rendered Application exceeds {limit} bytes")]
    TooLarge { limit: usize },
    /// `templatePatch` with `goTemplate: false` (Argo CD documents it as Go-template only).
    #[error("templatePatch requires goTemplate: true")]
    PatchNeedsGoTemplate,
    /// A rendered `templatePatch` that is not a YAML/JSON object (or a JSON patch list) or does
    /// not apply.
    #[error("invalid templatePatch: {0}")]
    InvalidPatch(String),
    /// The set's `template` is not shaped like `{metadata, spec}`.
    #[error("invalid template: {0}")]
    InvalidTemplate(String),
}

/// Renders every string leaf and map key of `value` with `params`.
///
/// `go_template == false`: Argo CD's fasttemplate — `{{name}}` / `{{ name }}` replaced by the
/// string parameter `name` (keys are flattened, like `path.basename`); tags naming no string
/// parameter are left exactly as written. `go_template == true`: Go `text/template` with the
/// parameters as nested data and `options` as `goTemplateOptions`. As in Argo CD, an empty
/// parameter set renders nothing.
pub fn render_value(
    value: &Value,
    params: &Map<String, Value>,
    go_template: bool,
    options: &[String],
) -> Result<Value, TemplateError> {
    if params.is_empty() {
        return Ok(value.clone());
    }
    let mut renderer = Renderer::new(params, go_template, options)?;
    renderer.value(value)
}

/// The set's `template` (`metadata` + `spec`) rendered with one parameter set into an
/// `argoproj.io/v1alpha1` Application, then `template_patch` (Go template only) rendered and
/// applied as Argo CD does: a YAML/JSON object is a strategic merge patch (the Application type
/// declares no list merge keys, so lists are replaced, maps merged, `null` deletes, and
/// `$patch: replace|delete` are honoured); a list is an RFC 6902 JSON patch; `spec.project`
/// cannot be changed by the patch. Like Argo CD, only `metadata.name`, `namespace`, `labels`,
/// `annotations` and `finalizers` of the template's metadata are kept. The default finalizer is
/// the caller's business (`add_default_finalizer`), since it depends on the set's `syncPolicy`.
pub fn render_application(
    template: &Value,
    template_patch: Option<&str>,
    params: &Map<String, Value>,
    go_template: bool,
    options: &[String],
) -> Result<Value, TemplateError> {
    let Value::Object(tmpl) = template else {
        return Err(TemplateError::InvalidTemplate(
            "template must be an object with metadata and spec".into(),
        ));
    };
    let mut metadata = Map::new();
    match tmpl.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for key in ["name", "namespace", "labels", "annotations", "finalizers"] {
                if let Some(v) = m.get(key) {
                    metadata.insert(key.to_string(), v.clone());
                }
            }
        }
        Some(_) => {
            return Err(TemplateError::InvalidTemplate(
                "template.metadata must be an object".into(),
            ));
        }
    }
    let spec = match tmpl.get("spec") {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => {
            return Err(TemplateError::InvalidTemplate(
                "template.spec must be an object".into(),
            ));
        }
    };
    let mut app = Map::new();
    app.insert("apiVersion".into(), Value::from("argoproj.io/v1alpha1"));
    app.insert("kind".into(), Value::from("Application"));
    app.insert("metadata".into(), Value::Object(metadata));
    app.insert("spec".into(), spec);
    let mut app = Value::Object(app);

    if !params.is_empty() {
        let mut renderer = Renderer::new(params, go_template, options)?;
        // apiVersion and kind are constants: render metadata and spec only.
        if let Value::Object(obj) = &mut app {
            for key in ["metadata", "spec"] {
                if let Some(v) = obj.get(key) {
                    let rendered = renderer.value(v)?;
                    obj.insert(key.to_string(), rendered);
                }
            }
        }
        if let Some(patch) = template_patch {
            if !go_template {
                return Err(TemplateError::PatchNeedsGoTemplate);
            }
            let rendered = renderer.string(patch)?;
            merge::apply_template_patch(&mut app, &rendered)?;
        }
    } else if let Some(patch) = template_patch {
        if !go_template {
            return Err(TemplateError::PatchNeedsGoTemplate);
        }
        merge::apply_template_patch(&mut app, patch)?;
    }

    let size = serde_json::to_vec(&app)
        .map(|b| b.len())
        .unwrap_or(usize::MAX);
    if size > MAX_APPLICATION_BYTES {
        return Err(TemplateError::TooLarge {
            limit: MAX_APPLICATION_BYTES,
        });
    }
    Ok(app)
}

/// Argo CD's finalizer rule: an Application rendered without finalizers gets
/// `resources-finalizer.argocd.argoproj.io` unless the set's
/// `syncPolicy.preserveResourcesOnDeletion` is true.
pub fn add_default_finalizer(app: &mut Value, preserve_resources_on_deletion: bool) {
    if preserve_resources_on_deletion {
        return;
    }
    let Some(Value::Object(metadata)) = app.get_mut("metadata") else {
        return;
    };
    let empty = match metadata.get("finalizers") {
        None | Some(Value::Null) => true,
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    if empty {
        metadata.insert(
            "finalizers".into(),
            Value::Array(vec![Value::from(RESOURCES_FINALIZER)]),
        );
    }
}

/// One render: the mode, its prepared data and the output budget left.
struct Renderer<'p> {
    mode: Mode<'p>,
    budget: usize,
}

enum Mode<'p> {
    Fast(&'p Map<String, Value>),
    Go(engine::GoEngine),
}

impl<'p> Renderer<'p> {
    fn new(
        params: &'p Map<String, Value>,
        go_template: bool,
        options: &[String],
    ) -> Result<Self, TemplateError> {
        let mode = if go_template {
            Mode::Go(engine::GoEngine::new(params, options)?)
        } else {
            Mode::Fast(params)
        };
        Ok(Renderer {
            mode,
            budget: MAX_APPLICATION_BYTES,
        })
    }

    fn string(&mut self, s: &str) -> Result<String, TemplateError> {
        let out = match &self.mode {
            Mode::Fast(params) => fast::render(s, params)?,
            Mode::Go(engine) => engine.render(s, self.budget)?,
        };
        self.budget = self
            .budget
            .checked_sub(out.len())
            .ok_or(TemplateError::TooLarge {
                limit: MAX_APPLICATION_BYTES,
            })?;
        Ok(out)
    }

    fn value(&mut self, value: &Value) -> Result<Value, TemplateError> {
        Ok(match value {
            Value::String(s) => Value::String(self.string(s)?),
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|v| self.value(v))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => {
                let mut out = Map::with_capacity(map.len());
                for (k, v) in map {
                    let v = self.value(v)?;
                    let k = self.string(k)?;
                    out.insert(k, v);
                }
                Value::Object(out)
            }
            other => other.clone(),
        })
    }
}
