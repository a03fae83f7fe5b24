//! Deploy recipes: how a deploy tool is run, one TOML file per tool in `commands/`.
//!
//! A [`Recipe`] names a program and its arguments as templates (`{environment}`, `{ref}`, `{sha}`,
//! `{task}`, `{hosts}`, `{app}`, `{repository}`, `{deployment_id}`), extra environment variables, a
//! default timeout, and the marker files that detect the tool in a checkout. [`Recipe::render`] turns a
//! [`RenderInput`] into an [`Invocation`]: a program and an argv, each template rendered into exactly
//! one argument. Nothing is ever handed to a shell, and a recipe whose program *is* a shell (or that
//! feeds a value to `-c`) is refused when it is loaded.
//!
//! Detection order: recipes with markers are tried by `[detect] order` (then name); the first whose
//! marker exists in the checkout wins. An app's `provider` in `bot.toml` skips detection.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::{HumanDuration, Problem};
use crate::domain::{AppName, DeploymentId, Environment, GitRef, Hosts, Repository, Sha, Task};

/// Placeholders a template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "environment",
    "ref",
    "sha",
    "task",
    "hosts",
    "app",
    "repository",
    "deployment_id",
];

/// Programs that would read an argument as code; a recipe may not run them.
const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "fish", "csh", "tcsh", "busybox", "env", "eval",
];

/// A loaded recipe.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub name: String,
    pub description: String,
    pub program: String,
    pub args: Vec<Arg>,
    pub env: BTreeMap<String, String>,
    pub timeout: Option<Duration>,
    pub detect: Detect,
    pub file: PathBuf,
}

/// One element of `args`: a template, or a group that is rendered only when a value was given.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum Arg {
    Template(String),
    /// `{ when = "hosts", args = ["-H", "{hosts}"] }`
    When {
        when: String,
        args: Vec<String>,
    },
}

/// Marker paths, relative to the checkout; any one present selects the recipe.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Detect {
    #[serde(default = "default_order")]
    pub order: u32,
    #[serde(default)]
    pub files: Vec<String>,
    #[serde(default)]
    pub dirs: Vec<String>,
    #[serde(default)]
    pub executables: Vec<String>,
}

fn default_order() -> u32 {
    100
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipe {
    description: String,
    program: String,
    #[serde(default)]
    args: Vec<Arg>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    timeout: Option<HumanDuration>,
    #[serde(default)]
    detect: Detect,
}

/// The values a deploy fills into a recipe, each validated where it entered zbot, so none can be read
/// as an option, a shell word or a path outside the tree.
#[derive(Debug, Clone)]
pub struct RenderInput<'a> {
    pub environment: &'a Environment,
    pub git_ref: &'a GitRef,
    pub sha: &'a Sha,
    pub task: &'a Task,
    pub hosts: Option<&'a Hosts>,
    pub app: &'a AppName,
    pub repository: &'a Repository,
    pub deployment_id: DeploymentId,
}

/// A rendered recipe: run `program` with `args` and `env` added to the clean environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

impl RenderInput<'_> {
    fn value(&self, placeholder: &str) -> Option<String> {
        Some(match placeholder {
            "environment" => self.environment.to_string(),
            "ref" => self.git_ref.to_string(),
            "sha" => self.sha.to_string(),
            "task" => self.task.to_string(),
            "hosts" => self.hosts?.to_string(),
            "app" => self.app.to_string(),
            "repository" => self.repository.to_string(),
            "deployment_id" => self.deployment_id.to_string(),
            _ => return None,
        })
    }
}

/// Splits a template into literal text and placeholder names; `{{` and `}}` are literal braces.
fn pieces(template: &str) -> Result<Vec<(bool, String)>, String> {
    let mut out = Vec::new();
    let mut literal = String::new();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                literal.push('}');
            }
            '{' => {
                let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                if !PLACEHOLDERS.contains(&name.as_str()) {
                    return Err(format!(
                        "unknown placeholder `{{{name}}}` in `{template}` (known: {})",
                        PLACEHOLDERS.join(", ")
                    ));
                }
                out.push((false, std::mem::take(&mut literal)));
                out.push((true, name));
            }
            '}' => return Err(format!("a lone `}}` in `{template}`: write `}}}}`")),
            c => literal.push(c),
        }
    }
    out.push((false, literal));
    Ok(out)
}

fn render_template(template: &str, input: &RenderInput<'_>) -> Result<String, String> {
    let mut out = String::new();
    for (is_placeholder, text) in pieces(template)? {
        if is_placeholder {
            let value = input
                .value(&text)
                .ok_or_else(|| format!("`{{{text}}}` has no value for this deploy"))?;
            out.push_str(&value);
        } else {
            out.push_str(&text);
        }
    }
    Ok(out)
}

impl Recipe {
    /// Parses one recipe file's text; `name` is the file stem.
    pub fn from_source(file: &Path, name: &str, source: &str) -> Result<Recipe, Problem> {
        let problem = |message: String| Problem {
            file: file.to_path_buf(),
            line: 0,
            key: String::new(),
            message,
        };
        let raw: RawRecipe =
            toml::from_str(source).map_err(|e| Problem::from_toml(file, source, &e))?;
        let recipe = Recipe {
            name: name.to_string(),
            description: raw.description,
            program: raw.program,
            args: raw.args,
            env: raw.env,
            timeout: raw.timeout.map(|t| t.0),
            detect: raw.detect,
            file: file.to_path_buf(),
        };
        recipe.check().map_err(problem)?;
        Ok(recipe)
    }

    /// The rules a recipe must follow to be loaded.
    fn check(&self) -> Result<(), String> {
        let base = Path::new(&self.program)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if self.program.is_empty() || self.program.contains(char::is_whitespace) {
            return Err(format!(
                "program `{}` must be one path with no spaces; put arguments in `args`",
                self.program
            ));
        }
        if SHELLS.contains(&base) {
            return Err(format!(
                "program `{}` is a shell: recipes run programs directly, never through a shell",
                self.program
            ));
        }
        pieces(&self.program)?;
        let mut previous = "";
        for arg in self.templates() {
            let has_placeholder = pieces(arg)?
                .iter()
                .any(|(is_placeholder, _)| *is_placeholder);
            if has_placeholder && matches!(previous, "-c" | "-e" | "--command" | "--eval") {
                return Err(format!("`{previous} {arg}` would run a value as code"));
            }
            previous = arg;
        }
        for (name, value) in &self.env {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`{name}` is not an environment variable name"));
            }
            pieces(value)?;
        }
        for arg in &self.args {
            if let Arg::When { when, .. } = arg
                && when != "hosts"
            {
                return Err(format!("`when = \"{when}\"`: only `hosts` is optional"));
            }
        }
        Ok(())
    }

    fn templates(&self) -> impl Iterator<Item = &String> {
        self.args.iter().flat_map(|arg| match arg {
            Arg::Template(t) => std::slice::from_ref(t).iter(),
            Arg::When { args, .. } => args.iter(),
        })
    }

    /// Renders the argv: one argument per template, never a shell string.
    pub fn render(&self, input: &RenderInput<'_>) -> Result<Invocation, String> {
        let mut args = Vec::new();
        for arg in &self.args {
            match arg {
                Arg::Template(t) => args.push(render_template(t, input)?),
                Arg::When { when, args: group } => {
                    if input.value(when).is_some() {
                        for t in group {
                            args.push(render_template(t, input)?);
                        }
                    }
                }
            }
        }
        let env = self
            .env
            .iter()
            .map(|(k, v)| Ok((k.clone(), render_template(v, input)?)))
            .collect::<Result<_, String>>()?;
        Ok(Invocation {
            program: render_template(&self.program, input)?,
            args,
            env,
        })
    }

    /// Whether a marker of this recipe is present in `checkout`.
    pub fn detected_in(&self, checkout: &Path) -> bool {
        use std::os::unix::fs::PermissionsExt;
        let d = &self.detect;
        d.files.iter().any(|f| checkout.join(f).is_file())
            || d.dirs.iter().any(|f| checkout.join(f).is_dir())
            || d.executables.iter().any(|f| {
                std::fs::metadata(checkout.join(f))
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    }

    fn has_markers(&self) -> bool {
        let d = &self.detect;
        !(d.files.is_empty() && d.dirs.is_empty() && d.executables.is_empty())
    }
}

/// All recipes of a directory, by name.
#[derive(Debug, Clone, Default)]
pub struct Recipes {
    pub by_name: BTreeMap<String, Recipe>,
}

impl Recipes {
    /// Loads every `*.toml` in `dir`; every broken file is reported.
    pub fn load_dir(dir: &Path) -> Result<Recipes, Vec<Problem>> {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            vec![Problem {
                file: dir.to_path_buf(),
                line: 0,
                key: String::new(),
                message: format!("cannot read the recipes directory: {e}"),
            }]
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let mut recipes = Recipes::default();
        let mut problems = Vec::new();
        for path in paths {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            let loaded = std::fs::read_to_string(&path)
                .map_err(|e| Problem {
                    file: path.clone(),
                    line: 0,
                    key: String::new(),
                    message: format!("cannot read: {e}"),
                })
                .and_then(|source| Recipe::from_source(&path, &name, &source));
            match loaded {
                Ok(recipe) => {
                    recipes.by_name.insert(name, recipe);
                }
                Err(problem) => problems.push(problem),
            }
        }
        if problems.is_empty() {
            Ok(recipes)
        } else {
            Err(problems)
        }
    }

    pub fn get(&self, name: &str) -> Option<&Recipe> {
        self.by_name.get(name)
    }

    /// Recipes with markers, in detection order.
    pub fn detection_order(&self) -> Vec<&Recipe> {
        let mut ordered: Vec<&Recipe> = self.by_name.values().filter(|r| r.has_markers()).collect();
        ordered.sort_by(|a, b| (a.detect.order, &a.name).cmp(&(b.detect.order, &b.name)));
        ordered
    }

    /// The app's provider if it names one, else the first recipe detected in `checkout`.
    pub fn choose(&self, provider: Option<&str>, checkout: &Path) -> Result<&Recipe, String> {
        match provider {
            Some(name) => self
                .get(name)
                .ok_or_else(|| format!("no recipe named `{name}` in commands/")),
            None => self
                .detection_order()
                .into_iter()
                .find(|r| r.detected_in(checkout))
                .ok_or_else(|| {
                    let tried: Vec<&str> = self
                        .detection_order()
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect();
                    format!(
                        "no deploy recipe matched this checkout (tried {})",
                        tried.join(", ")
                    )
                }),
        }
    }
}

/// The recipes `config` names (`[deploy] recipes_dir`), checked against the apps: an app whose
/// `provider` names no recipe is a problem. `zbot run`, `zbot shell` and `zbot check` all load through
/// here, so what `check` accepts is what `run` runs.
pub fn load_for(config: &crate::config::Config) -> Result<Recipes, Vec<Problem>> {
    let recipes = Recipes::load_dir(&config.deploy.recipes_dir)?;
    let problems: Vec<Problem> = config
        .apps
        .iter()
        .filter_map(|(name, app)| {
            let provider = app.provider.as_ref()?;
            recipes.get(provider).is_none().then(|| Problem {
                file: config.path.clone(),
                line: 0,
                key: format!("[apps.{name}] provider"),
                message: format!(
                    "no recipe `{provider}` in {}",
                    config.deploy.recipes_dir.display()
                ),
            })
        })
        .collect();
    if problems.is_empty() {
        Ok(recipes)
    } else {
        Err(problems)
    }
}
