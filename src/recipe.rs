//! Deploy recipes: how a deploy tool is run, one TOML file per tool in `commands/`.
//!
//! A [`Recipe`] names a program and its arguments as templates (`{environment}`, `{ref}`, `{sha}`,
//! `{task}`, `{hosts}`, `{app}`, `{repository}`, `{deployment_id}`), extra environment variables, a
//! default timeout, and the marker files that detect the tool in a checkout. [`Recipe::render`] turns a
//! [`RenderInput`] into an [`Invocation`]: a program and an argv, each template rendered into exactly
//! one argument. Nothing is ever handed to a shell, and a recipe whose program *is* a shell (or that
//! feeds a value to `-c`) is refused when it is loaded.
//!
//! Tools parse inside an argument too (Fabric 1's `task:arg,key=value`, Capistrano's `HOSTS`, Ansible's
//! `--limit` and `--extra-vars`), so a placeholder may name how its value is written there:
//! `{ref|fabric1_arg}` ([`syntax::Quote`]). A value the tool cannot be given as typed is a
//! [`RenderError`], and the deploy is refused before anything runs. So is a deploy limited to some
//! hosts with a recipe that has no `{hosts}`: it could not limit.
//!
//! Detection order: recipes with markers are tried by `[detect] order` (then name); the first whose
//! marker exists in the checkout wins. An app's `provider` in `bot.toml` skips detection.

pub mod syntax;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::{HumanDuration, Problem};
use crate::domain::{AppName, DeploymentId, Environment, GitRef, Hosts, Repository, Sha, Task};
use syntax::{Quote, Unrepresentable, Value};

/// A value a template may place: `{environment}`, `{ref}`, …
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Placeholder {
    Environment,
    Ref,
    Sha,
    Task,
    Hosts,
    App,
    Repository,
    DeploymentId,
}

impl Placeholder {
    /// Every placeholder with its name in a template.
    pub const ALL: &[(&str, Placeholder)] = &[
        ("environment", Placeholder::Environment),
        ("ref", Placeholder::Ref),
        ("sha", Placeholder::Sha),
        ("task", Placeholder::Task),
        ("hosts", Placeholder::Hosts),
        ("app", Placeholder::App),
        ("repository", Placeholder::Repository),
        ("deployment_id", Placeholder::DeploymentId),
    ];

    /// Its name in a template, without braces.
    pub fn name(self) -> &'static str {
        syntax::name_in(Placeholder::ALL, self)
    }

    fn from_name(name: &str) -> Option<Placeholder> {
        syntax::named(Placeholder::ALL, name)
    }
}

/// Programs that would read an argument as code; a recipe may not run them.
const SHELLS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ksh", "mksh", "fish", "csh", "tcsh", "busybox", "env", "eval",
];

/// The stock recipes, compiled into the binary: `(name, TOML text)`. A recipe of the same name in the
/// recipes directory (`[deploy] recipes_dir`, else `commands/` beside bot.toml) replaces one of these.
pub const STOCK: &[(&str, &str)] = &[
    ("ansible", include_str!("../commands/ansible.toml")),
    ("capistrano", include_str!("../commands/capistrano.toml")),
    ("fabric", include_str!("../commands/fabric.toml")),
    ("fabric2", include_str!("../commands/fabric2.toml")),
    ("shell", include_str!("../commands/shell.toml")),
];

/// Where a loaded recipe came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Compiled into zbot ([`STOCK`]); a file in the recipes directory with the very same text counts
    /// as stock too.
    Stock,
    /// A file of the recipes directory: a recipe of its own, or one that replaces a stock recipe.
    Local { overrides_stock: bool },
}

/// A loaded recipe.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub name: String,
    pub description: String,
    pub program: Template,
    pub args: Vec<Arg>,
    pub env: BTreeMap<String, Template>,
    pub timeout: Option<Duration>,
    /// `keep_children = true`: processes the deploy starts outside its process group (daemons it
    /// launches on purpose) are left running when it ends, instead of being stopped.
    pub keep_children: bool,
    pub detect: Detect,
    /// How a dry run (`deploy:noop`) runs, if the tool has one.
    pub noop: Option<Noop>,
    /// The file it was read from; for a stock recipe, `(built in) commands/<name>.toml`.
    pub file: PathBuf,
    pub origin: Origin,
}

/// A recipe's dry run: `noop_task` is the task `{task}` stands for, and `noop_args` (by default the
/// recipe's `args`) the arguments, e.g. Capistrano's `--dry-run` or a Fabric task's `noop=true`. The
/// program also gets `ZBOT_NOOP=1`.
#[derive(Debug, Clone)]
pub struct Noop {
    pub task: Task,
    pub args: Option<Vec<Arg>>,
}

/// One element of `args`: a template, or a group chosen by whether the deploy names hosts.
#[derive(Debug, Clone)]
pub enum Arg {
    Template(Template),
    /// `{ when = "hosts", args = […], otherwise = […] }`: `args` when the deploy is limited to some
    /// hosts, `otherwise` (by default nothing) when it is not.
    WhenHosts {
        args: Vec<Template>,
        otherwise: Vec<Template>,
    },
}

/// A template, parsed when its recipe loads: literal text and placeholders, each with its filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Value(Placeholder, Quote),
}

/// Why a recipe would not render for a deploy; the deploy is then refused before anything runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// The value of `placeholder` cannot be given to the tool as typed where the template puts it.
    Unrepresentable {
        placeholder: Placeholder,
        value: String,
        quote: Quote,
        why: Unrepresentable,
    },
    /// The template uses a placeholder this deploy has no value for (`{hosts}` outside a
    /// `when = "hosts"` group).
    NoValue { placeholder: Placeholder },
    /// The deploy is limited to some hosts, but the recipe has no `{hosts}`, so it could not limit.
    HostsNotTaken,
    /// A dry run (`deploy:noop`) of a recipe that declares no `noop_task`: it could not run without
    /// deploying for real.
    NoDryRun,
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
    args: Vec<RawArg>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    timeout: Option<HumanDuration>,
    #[serde(default)]
    keep_children: bool,
    #[serde(default)]
    detect: Detect,
    noop_task: Option<String>,
    noop_args: Option<Vec<RawArg>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawArg {
    Template(String),
    When(RawWhen),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWhen {
    when: String,
    args: Vec<String>,
    #[serde(default)]
    otherwise: Vec<String>,
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
    fn value(&self, placeholder: Placeholder) -> Option<Value> {
        let text = |s: &str| Value::Text(s.to_string());
        Some(match placeholder {
            Placeholder::Environment => text(self.environment.as_str()),
            Placeholder::Ref => text(self.git_ref.as_str()),
            Placeholder::Sha => text(self.sha.as_str()),
            Placeholder::Task => text(self.task.as_str()),
            Placeholder::Hosts => Value::List(self.hosts?.iter().map(str::to_string).collect()),
            Placeholder::App => text(self.app.as_str()),
            Placeholder::Repository => text(self.repository.as_str()),
            Placeholder::DeploymentId => Value::Text(self.deployment_id.to_string()),
        })
    }
}

impl Template {
    /// Parses a template: `{name}` or `{name|filter}` are placeholders, `{{` and `}}` literal braces.
    pub fn parse(source: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = source.chars().peekable();
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
                    let mut inside = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        inside.push(c);
                    }
                    if !closed {
                        return Err(format!("`{{{inside}` in `{source}` has no closing `}}`"));
                    }
                    let (name, filter) = match inside.split_once('|') {
                        Some((name, filter)) => (name, Some(filter)),
                        None => (inside.as_str(), None),
                    };
                    let placeholder = Placeholder::from_name(name).ok_or_else(|| {
                        let known: Vec<&str> = Placeholder::ALL.iter().map(|(n, _)| *n).collect();
                        format!(
                            "unknown placeholder `{{{name}}}` in `{source}` (known: {})",
                            known.join(", ")
                        )
                    })?;
                    let quote = match filter {
                        None => Quote::Verbatim,
                        Some(filter) => Quote::from_name(filter).ok_or_else(|| {
                            let known: Vec<&str> = Quote::names().collect();
                            format!(
                                "unknown filter `|{filter}` in `{source}` (known: {})",
                                known.join(", ")
                            )
                        })?,
                    };
                    if !literal.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Value(placeholder, quote));
                }
                '}' => return Err(format!("a lone `}}` in `{source}`: write `}}}}`")),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        let template = Template {
            source: source.to_string(),
            pieces,
        };
        template.check_fabric1_word()?;
        Ok(template)
    }

    /// The template as written in the recipe.
    pub fn source(&self) -> &str {
        &self.source
    }

    fn placeholders(&self) -> impl Iterator<Item = (Placeholder, Quote)> + '_ {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Value(p, q) => Some((*p, *q)),
            Piece::Text(_) => None,
        })
    }

    /// A Fabric 1 task word (`{task|fabric1_task}:branch_name={ref|fabric1_arg}`) must write every
    /// value in Fabric's syntax for where it stands: the task name before the first `:`, arguments
    /// after it. A plain `{task}` there would let `deploy:migrate` move the `:`.
    fn check_fabric1_word(&self) -> Result<(), String> {
        let fabric1 = self
            .placeholders()
            .any(|(_, q)| matches!(q, Quote::Fabric1Task | Quote::Fabric1Arg));
        // The shape alone (`…:name=…` around placeholders) is Fabric 1's too: a recipe written before
        // the filters existed (`{task}:branch_name={ref}`) must not load unfiltered.
        let mut colon = false;
        let mut shaped = false;
        for piece in &self.pieces {
            if let Piece::Text(text) = piece {
                if colon && text.contains('=') {
                    shaped = true;
                }
                if let Some((_, after)) = text.split_once(':') {
                    colon = true;
                    shaped |= after.contains('=');
                }
            }
        }
        let has_value = self.placeholders().next().is_some();
        if !(fabric1 || (shaped && has_value)) {
            return Ok(());
        }
        let mut after_colon = false;
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => after_colon |= text.contains(':'),
                Piece::Value(placeholder, quote) => {
                    let wanted = if after_colon {
                        Quote::Fabric1Arg
                    } else {
                        Quote::Fabric1Task
                    };
                    if *quote != wanted {
                        let part = if after_colon {
                            "an argument"
                        } else {
                            "the task name"
                        };
                        return Err(format!(
                            "in the Fabric 1 task `{}`, `{{{}}}` is {part}: write `{{{}|{}}}`",
                            self.source,
                            placeholder.name(),
                            placeholder.name(),
                            wanted.name()
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Renders the template; right to left, so each value knows the character that follows it.
    fn render(&self, input: &RenderInput<'_>) -> Result<String, RenderError> {
        let mut parts: Vec<String> = Vec::with_capacity(self.pieces.len());
        let mut next: Option<char> = None;
        for piece in self.pieces.iter().rev() {
            let part = match piece {
                Piece::Text(text) => text.clone(),
                Piece::Value(placeholder, quote) => {
                    let value = input.value(*placeholder).ok_or(RenderError::NoValue {
                        placeholder: *placeholder,
                    })?;
                    quote
                        .write(&value, next)
                        .map_err(|why| RenderError::Unrepresentable {
                            placeholder: *placeholder,
                            value: match &value {
                                Value::Text(text) => text.clone(),
                                Value::List(items) => items.join(","),
                            },
                            quote: *quote,
                            why,
                        })?
                }
            };
            if let Some(first) = part.chars().next() {
                next = Some(first);
            }
            parts.push(part);
        }
        parts.reverse();
        Ok(parts.concat())
    }
}

/// Parses `args` (or `noop_args`): templates and `when = "hosts"` groups.
fn parse_args(raw: &[RawArg]) -> Result<Vec<Arg>, String> {
    let templates = |sources: &[String]| -> Result<Vec<Template>, String> {
        sources.iter().map(|s| Template::parse(s)).collect()
    };
    raw.iter()
        .map(|arg| match arg {
            RawArg::Template(t) => Template::parse(t).map(Arg::Template),
            RawArg::When(when) if when.when == "hosts" => Ok(Arg::WhenHosts {
                args: templates(&when.args)?,
                otherwise: templates(&when.otherwise)?,
            }),
            RawArg::When(when) => Err(format!(
                "`when = \"{}\"`: only `hosts` is optional",
                when.when
            )),
        })
        .collect()
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
        let args = parse_args(&raw.args).map_err(problem)?;
        let noop = match raw.noop_task {
            None if raw.noop_args.is_some() => {
                return Err(problem("`noop_args` needs `noop_task`".to_string()));
            }
            None => None,
            Some(task) => Some(Noop {
                task: task
                    .parse()
                    .map_err(|e| problem(format!("noop_task: {e}")))?,
                args: raw
                    .noop_args
                    .as_deref()
                    .map(parse_args)
                    .transpose()
                    .map_err(problem)?,
            }),
        };
        let env = raw
            .env
            .iter()
            .map(|(k, v)| Ok((k.clone(), Template::parse(v)?)))
            .collect::<Result<BTreeMap<_, _>, String>>()
            .map_err(problem)?;
        let recipe = Recipe {
            name: name.to_string(),
            description: raw.description,
            program: Template::parse(&raw.program).map_err(problem)?,
            args,
            env,
            timeout: raw.timeout.map(|t| t.0),
            keep_children: raw.keep_children,
            detect: raw.detect,
            noop,
            file: file.to_path_buf(),
            origin: Origin::Local {
                overrides_stock: false,
            },
        };
        recipe.check().map_err(problem)?;
        Ok(recipe)
    }

    /// The rules a recipe must follow to be loaded.
    fn check(&self) -> Result<(), String> {
        let program = self.program.source();
        let base = Path::new(program)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if program.is_empty() || program.contains(char::is_whitespace) {
            return Err(format!(
                "program `{program}` must be one path with no spaces; put arguments in `args`"
            ));
        }
        if SHELLS.contains(&base) {
            return Err(format!(
                "program `{program}` is a shell: recipes run programs directly, never through a shell"
            ));
        }
        let mut previous = "";
        for arg in self.templates() {
            if arg.placeholders().next().is_some()
                && matches!(previous, "-c" | "-e" | "--command" | "--eval")
            {
                return Err(format!(
                    "`{previous} {}` would run a value as code",
                    arg.source()
                ));
            }
            previous = arg.source();
        }
        for name in self.env.keys() {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("`{name}` is not an environment variable name"));
            }
        }
        Ok(())
    }

    fn templates(&self) -> impl Iterator<Item = &Template> {
        let noop_args = self.noop.iter().flat_map(|n| n.args.iter().flatten());
        self.args.iter().chain(noop_args).flat_map(|arg| match arg {
            Arg::Template(t) => std::slice::from_ref(t).iter().chain([].iter()),
            Arg::WhenHosts { args, otherwise } => args.iter().chain(otherwise.iter()),
        })
    }

    /// Whether the recipe drives Fabric 1 (it writes a value in Fabric 1's task syntax): the one zbot
    /// may install itself (`[deploy] provision_fabric`). Fabric 2's `fab` has the same name and another
    /// command line, so the program's name alone does not say.
    pub fn drives_fabric1(&self) -> bool {
        self.templates()
            .flat_map(Template::placeholders)
            .any(|(_, quote)| matches!(quote, Quote::Fabric1Task | Quote::Fabric1Arg))
    }

    /// Whether some template of the recipe places `{hosts}`, so a deploy limited to some hosts can be.
    pub fn takes_hosts(&self) -> bool {
        self.templates()
            .chain(self.env.values())
            .chain(std::iter::once(&self.program))
            .flat_map(Template::placeholders)
            .any(|(p, _)| p == Placeholder::Hosts)
    }

    /// Renders the argv: one argument per template, each value in the tool's syntax, never a shell
    /// string.
    pub fn render(&self, input: &RenderInput<'_>) -> Result<Invocation, RenderError> {
        self.render_args(&self.args, input)
    }

    /// Renders the recipe's dry run (`deploy:noop`): `noop_task` as `{task}`, `noop_args` (else
    /// `args`), and `ZBOT_NOOP=1`; [`RenderError::NoDryRun`] when the recipe declares none.
    pub fn render_dry_run(&self, input: &RenderInput<'_>) -> Result<Invocation, RenderError> {
        let noop = self.noop.as_ref().ok_or(RenderError::NoDryRun)?;
        let input = RenderInput {
            task: &noop.task,
            ..input.clone()
        };
        let mut invocation = self.render_args(noop.args.as_ref().unwrap_or(&self.args), &input)?;
        invocation.env.retain(|(name, _)| name != "ZBOT_NOOP");
        invocation
            .env
            .push(("ZBOT_NOOP".to_string(), "1".to_string()));
        Ok(invocation)
    }

    fn render_args(
        &self,
        list: &[Arg],
        input: &RenderInput<'_>,
    ) -> Result<Invocation, RenderError> {
        if input.hosts.is_some() && !self.takes_hosts() {
            return Err(RenderError::HostsNotTaken);
        }
        let mut args = Vec::new();
        for arg in list {
            let group = match arg {
                Arg::Template(t) => std::slice::from_ref(t),
                Arg::WhenHosts { args, .. } if input.hosts.is_some() => args,
                Arg::WhenHosts { otherwise, .. } => otherwise,
            };
            for t in group {
                args.push(t.render(input)?);
            }
        }
        let env = self
            .env
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.render(input)?)))
            .collect::<Result<_, RenderError>>()?;
        Ok(Invocation {
            program: self.program.render(input)?,
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
    /// The stock recipes alone.
    pub fn stock() -> Recipes {
        let mut recipes = Recipes::default();
        for (name, source) in STOCK {
            let file = PathBuf::from(format!("(built in) commands/{name}.toml"));
            // The stock recipes are loaded by a unit test below; one that did not load would fail it.
            if let Ok(mut recipe) = Recipe::from_source(&file, name, source) {
                recipe.origin = Origin::Stock;
                recipes.by_name.insert((*name).to_string(), recipe);
            }
        }
        recipes
    }

    /// Loads every `*.toml` in `dir` alone, without the stock recipes; every broken file is reported.
    pub fn load_dir(dir: &Path) -> Result<Recipes, Vec<Problem>> {
        let mut recipes = Recipes::default();
        recipes.add_dir(dir)?;
        Ok(recipes)
    }

    /// The stock recipes, then every `*.toml` in `dir` (if given) added or replacing the stock one of
    /// its name. A file whose text is the stock recipe's own stays stock.
    pub fn with_local(dir: Option<&Path>) -> Result<Recipes, Vec<Problem>> {
        let mut recipes = Recipes::stock();
        if let Some(dir) = dir {
            recipes.add_dir(dir)?;
        }
        Ok(recipes)
    }

    fn add_dir(&mut self, dir: &Path) -> Result<(), Vec<Problem>> {
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
        let mut problems = Vec::new();
        for path in paths {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            let source = match std::fs::read_to_string(&path) {
                Ok(source) => source,
                Err(e) => {
                    problems.push(Problem {
                        file: path.clone(),
                        line: 0,
                        key: String::new(),
                        message: format!("cannot read: {e}"),
                    });
                    continue;
                }
            };
            let stock = STOCK.iter().find(|(stock, _)| *stock == name);
            if stock.is_some_and(|(_, text)| *text == source)
                && self
                    .by_name
                    .get(&name)
                    .is_some_and(|r| r.origin == Origin::Stock)
            {
                continue;
            }
            match Recipe::from_source(&path, &name, &source) {
                Ok(mut recipe) => {
                    recipe.origin = Origin::Local {
                        overrides_stock: stock.is_some(),
                    };
                    self.by_name.insert(name, recipe);
                }
                Err(problem) => problems.push(problem),
            }
        }
        if problems.is_empty() {
            Ok(())
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
            Some(name) => self.get(name).ok_or_else(|| {
                format!("no recipe named `{name}` (stock or in the recipes directory)")
            }),
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

/// The stock recipes with those of the directory `config` names (`[deploy] recipes_dir`, which must be
/// readable; else `commands/` beside bot.toml when there is one), checked against the apps: an app
/// whose `provider` names no recipe is a problem. `zbot run`, `zbot shell` and `zbot check` all load
/// through here, so what `check` accepts is what `run` runs.
pub fn load_for(config: &crate::config::Config) -> Result<Recipes, Vec<Problem>> {
    let recipes = Recipes::with_local(config.deploy.recipes_dir.existing())?;
    let problems: Vec<Problem> = config
        .apps
        .iter()
        .filter_map(|(name, app)| {
            // Heroku's Platform API needs no recipe.
            let provider = app.provider.as_ref().filter(|_| !app.is_heroku())?;
            recipes.get(provider).is_none().then(|| Problem {
                file: config.path.clone(),
                line: 0,
                key: format!("[apps.{name}] provider"),
                message: format!(
                    "no recipe `{provider}`: neither a stock recipe nor a file in {}",
                    config.deploy.recipes_dir.path().display()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stock_recipe_loads() {
        for (name, source) in STOCK {
            let file = PathBuf::from(format!("commands/{name}.toml"));
            if let Err(problem) = Recipe::from_source(&file, name, source) {
                panic!("stock recipe {name}: {problem}");
            }
        }
        let stock = Recipes::stock();
        assert_eq!(stock.by_name.len(), STOCK.len());
        assert!(stock.by_name.values().all(|r| r.origin == Origin::Stock));
    }

    fn input<'a>(
        environment: &'a Environment,
        git_ref: &'a GitRef,
        sha: &'a Sha,
        task: &'a Task,
        app: &'a AppName,
        repository: &'a Repository,
    ) -> RenderInput<'a> {
        RenderInput {
            environment,
            git_ref,
            sha,
            task,
            hosts: None,
            app,
            repository,
            deployment_id: DeploymentId(7),
        }
    }

    #[test]
    fn every_stock_recipe_has_a_dry_run_that_differs_from_its_deploy() {
        let environment: Environment = "production".parse().unwrap();
        let git_ref: GitRef = "v0.0.2".parse().unwrap();
        let sha: Sha = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e".parse().unwrap();
        let task = Task::noop();
        let app: AppName = "adxstat".parse().unwrap();
        let repository: Repository = "octo/adxstat".parse().unwrap();
        let input = input(&environment, &git_ref, &sha, &task, &app, &repository);
        let recipes = Recipes::stock();
        let expected: &[(&str, &str)] = &[
            ("fabric", "deploy:branch_name=v0.0.2,noop=true"),
            ("fabric2", "--noop"),
            ("capistrano", "--dry-run"),
            ("ansible", "--check"),
            ("shell", "--noop"),
        ];
        for (name, marker) in expected {
            let recipe = recipes.get(name).unwrap();
            let dry = recipe.render_dry_run(&input).unwrap();
            assert!(dry.args.iter().any(|a| a == marker), "{name}: {dry:?}");
            assert!(
                dry.env
                    .contains(&("ZBOT_NOOP".to_string(), "1".to_string())),
                "{name}: {dry:?}"
            );
            assert!(
                !dry.args
                    .iter()
                    .any(|a| a.contains("noop:") || a == "deploy:noop"),
                "{name}: the noop task is the recipe's, not `deploy:noop`: {dry:?}"
            );
        }
        let plain = Recipe::from_source(
            Path::new("make.toml"),
            "make",
            "description = \"make\"\nprogram = \"make\"\nargs = [\"{task}\"]\n",
        )
        .unwrap();
        assert_eq!(plain.render_dry_run(&input), Err(RenderError::NoDryRun));
    }

    #[test]
    fn a_local_recipe_adds_or_replaces_and_a_copy_stays_stock() {
        let dir = tempfile::tempdir().unwrap();
        let fabric = STOCK.iter().find(|(n, _)| *n == "fabric").unwrap().1;
        std::fs::write(dir.path().join("fabric.toml"), fabric).unwrap();
        std::fs::write(
            dir.path().join("shell.toml"),
            "description = \"mine\"\nprogram = \"script/ship\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("make.toml"),
            "description = \"make\"\nprogram = \"make\"\nargs = [\"deploy\"]\n",
        )
        .unwrap();
        let recipes = Recipes::with_local(Some(dir.path())).unwrap();
        let origin = |name: &str| recipes.get(name).map(|r| r.origin);
        assert_eq!(origin("fabric"), Some(Origin::Stock));
        assert_eq!(
            origin("shell"),
            Some(Origin::Local {
                overrides_stock: true
            })
        );
        assert_eq!(recipes.get("shell").unwrap().description, "mine");
        assert_eq!(
            origin("make"),
            Some(Origin::Local {
                overrides_stock: false
            })
        );
        assert_eq!(origin("capistrano"), Some(Origin::Stock));
    }
}
