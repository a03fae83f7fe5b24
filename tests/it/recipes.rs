//! Deploy recipes: the shipped ones load and render to argv, and a recipe cannot become a shell.

use std::path::Path;

use zbot::domain::{AppName, DeploymentId, Environment, GitRef, Hosts, Repository, Sha, Task};
use zbot::recipe::{Invocation, Recipe, Recipes, RenderInput, Template};

use crate::support::repo_root;

/// Renders `recipe` for these values, each parsed into its domain type first (as zbot does at its
/// edges): a value that does not parse is refused before any recipe sees it. `Err` is the sentence a
/// person reads.
pub fn render_task(
    recipe: &Recipe,
    git_ref: &str,
    task: &str,
    environment: &str,
    hosts: Option<&str>,
) -> Result<Invocation, String> {
    let git_ref: GitRef = git_ref.parse().map_err(|e| format!("{e}"))?;
    let task: Task = task.parse().map_err(|e| format!("{e}"))?;
    let environment: Environment = environment.parse().map_err(|e| format!("{e}"))?;
    let hosts: Option<Hosts> = hosts
        .map(str::parse)
        .transpose()
        .map_err(|e| format!("{e}"))?;
    let sha: Sha = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e".parse().unwrap();
    let app: AppName = "adxstat".parse().unwrap();
    let repository: Repository = "octo/adxstat".parse().unwrap();
    recipe
        .render(&RenderInput {
            environment: &environment,
            git_ref: &git_ref,
            sha: &sha,
            task: &task,
            hosts: hosts.as_ref(),
            app: &app,
            repository: &repository,
            deployment_id: DeploymentId(42),
        })
        .map_err(|e| zbot::reply::recipe_refused(&recipe.name, &e))
}

/// [`render_task`] for the `deploy` task.
fn render(
    recipe: &Recipe,
    git_ref: &str,
    environment: &str,
    hosts: Option<&str>,
) -> Result<Invocation, String> {
    render_task(recipe, git_ref, "deploy", environment, hosts)
}

fn shipped() -> Recipes {
    Recipes::load_dir(&repo_root().join("commands")).expect("the shipped recipes load")
}

#[test]
fn shipped_recipes_render_the_documented_commands() {
    let recipes = shipped();
    let fab = recipes
        .get("fabric")
        .map(|r| render(r, "v0.0.1", "production", None))
        .unwrap()
        .unwrap();
    assert_eq!(fab.program, "fab");
    assert_eq!(
        fab.args,
        [
            "--abort-on-prompts",
            "-R",
            "production",
            "deploy:branch_name=v0.0.1"
        ]
    );
    assert!(
        fab.env
            .contains(&("PYTHONWARNINGS".into(), "ignore".into()))
    );

    let fab = recipes
        .get("fabric")
        .map(|r| render(r, "v0.0.1", "production", Some("web1,web2")).unwrap())
        .unwrap();
    assert_eq!(
        fab.args,
        [
            "--abort-on-prompts",
            "-R",
            "production",
            "deploy:branch_name=v0.0.1,hosts=web1;web2"
        ]
    );

    let cap = recipes
        .get("capistrano")
        .map(|r| render(r, "main", "staging", None))
        .unwrap()
        .unwrap();
    assert_eq!(
        (cap.program.as_str(), cap.args.as_slice()),
        ("cap", &["staging".to_string(), "deploy".to_string()][..])
    );
    assert!(cap.env.contains(&("BRANCH".into(), "main".into())));

    let shell = recipes
        .get("shell")
        .map(|r| render(r, "main", "staging", None))
        .unwrap()
        .unwrap();
    assert_eq!(shell.program, "./script/deploy");
    for var in ["BRANCH", "SHA", "DEPLOY_ENV", "DEPLOY_TASK"] {
        assert!(shell.env.iter().any(|(k, _)| k == var), "{var}");
    }
    let order: Vec<&str> = recipes
        .detection_order()
        .iter()
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(order, ["shell", "capistrano", "fabric", "ansible"]);
}

#[test]
fn values_stay_single_arguments_and_bad_values_are_refused() {
    let recipes = shipped();
    let fabric = recipes.get("fabric").unwrap();
    for (git_ref, environment, hosts) in [
        ("main;id", "production", None),
        ("$(reboot)", "production", None),
        ("-x", "production", None),
        ("main", "prod uction", None),
        ("main", "production", Some("a;b")),
    ] {
        assert!(
            render(fabric, git_ref, environment, hosts).is_err(),
            "{git_ref} {environment} {hosts:?}"
        );
    }
}

/// Each stock recipe's argv for values that mean something inside a tool's arguments: the real tools
/// read them back in `tools.rs`; this pins what zbot writes.
#[test]
fn stock_recipes_write_values_in_their_tools_syntax() {
    let recipes = shipped();
    let argv = |recipe: &str, git_ref: &str, task: &str, hosts: Option<&str>| {
        let recipe = recipes.get(recipe).unwrap();
        let invocation = render_task(recipe, git_ref, task, "staging", hosts)?;
        let env: Vec<String> = invocation
            .env
            .iter()
            .filter(|(k, _)| {
                !["PYTHONWARNINGS", "PYTHONUNBUFFERED", "ANSIBLE_FORCE_COLOR"].contains(&k.as_str())
            })
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        Ok::<_, String>([invocation.args, env].concat().join(" "))
    };
    let sha = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e";
    /// recipe, ref, task, hosts → the argv and environment written, or the sentence of the refusal.
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
        Result<String, String>,
    );
    let cases: &[Case] = &[
        (
            "fabric",
            "hotfix,urgent",
            "deploy:migrate",
            None,
            Ok(r"--abort-on-prompts -R staging deploy.migrate:branch_name=hotfix\,urgent".into()),
        ),
        (
            "fabric",
            "v1,host=prod1",
            "deploy",
            Some("web1,web_2"),
            Ok(r"--abort-on-prompts -R staging deploy:branch_name=v1\,host\=prod1,hosts=web1;web_2"
                .into()),
        ),
        (
            "fabric2",
            "rel=2",
            "deploy:db_setup",
            Some("web1,web2"),
            Ok("-H web1,web2 deploy.db-setup --branch-name rel=2 ZBOT_ENVIRONMENT_NAME=staging".into()),
        ),
        (
            "capistrano",
            "rel=2",
            "deploy:migrate",
            Some("web1,web_2"),
            Ok(r"staging deploy:migrate HOSTS=^(?:web1|web_2)$ BRANCH=rel=2".into()),
        ),
        (
            "capistrano",
            "main",
            "deploy",
            Some("web1,db.internal"),
            Ok("staging deploy HOSTS=web1,db.internal BRANCH=main".into()),
        ),
        (
            "ansible",
            "a,b=c",
            "deploy:migrate",
            Some("web1"),
            Ok(format!(
                "-i ansible/hosts ansible/site.yml --extra-vars {{zbot_deploy_sha: !unsafe \"{sha}\", \
                 zbot_deploy_ref: !unsafe \"a,b=c\", zbot_environment: !unsafe \"staging\", \
                 zbot_task: !unsafe \"deploy:migrate\"}} --limit web1,&staging"
            )),
        ),
        (
            "ansible",
            "main",
            "deploy",
            Some("ungrouped"),
            Err("Refused to run recipe ansible: the hosts `ungrouped` cannot be given to Ansible as \
                 typed: Ansible reads `ungrouped` as a group of hosts, not as one host"
                .into()),
        ),
        (
            "shell",
            "a=b,c",
            "deploy:migrate",
            None,
            Ok(format!(
                "BRANCH=a=b,c DEPLOY_ENV=staging DEPLOY_TASK=deploy:migrate SHA={sha}"
            )),
        ),
    ];
    for (recipe, git_ref, task, hosts, expected) in cases {
        assert_eq!(
            &argv(recipe, git_ref, task, *hosts),
            expected,
            "{recipe} {git_ref} {task} {hosts:?}"
        );
    }
}

#[test]
fn a_fabric1_task_writes_every_value_in_fabrics_syntax() {
    let file = Path::new("fab.toml");
    let refused = [
        (
            "{task}:branch_name={ref|fabric1_arg}",
            "`{task}` is the task name: write `{task|fabric1_task}`",
        ),
        (
            "{task|fabric1_task}:branch_name={ref}",
            "`{ref}` is an argument: write `{ref|fabric1_arg}`",
        ),
        (
            "deploy:{task|fabric1_task}",
            "`{task}` is an argument: write `{task|fabric1_arg}`",
        ),
        (
            "{ref|fabric1_arg}",
            "`{ref}` is the task name: write `{ref|fabric1_task}`",
        ),
        ("{ref|shell_quote}", "unknown filter `|shell_quote`"),
        // The recipe as it was before filters existed: its shape is Fabric 1's, so it does not load
        // (a ref `v1,hosts=prod1` would otherwise choose the hosts).
        (
            "{task}:branch_name={ref}",
            "`{task}` is the task name: write `{task|fabric1_task}`",
        ),
        ("deploy:branch_name={ref}", "`{ref}` is an argument"),
        ("{ref", "`{ref` in `{ref` has no closing `}`"),
    ];
    for (template, message) in refused {
        let source = format!("description = \"x\"\nprogram = \"fab\"\nargs = [\"{template}\"]\n");
        let problem = Recipe::from_source(file, "fab", &source).unwrap_err();
        assert!(
            problem.message.contains(message),
            "{template}: {}",
            problem.message
        );
    }
    let source = "description = \"x\"\nprogram = \"fab\"\nargs = [\"-H\", \"{hosts}\", \
                  \"{task|fabric1_task}:{ref|fabric1_arg}\"]\n";
    assert!(Recipe::from_source(file, "fab", source).is_ok());
}

#[test]
fn a_recipe_cannot_be_a_shell() {
    let file = Path::new("evil.toml");
    for source in [
        "description = \"x\"\nprogram = \"sh\"\nargs = [\"-c\", \"deploy {ref}\"]\n",
        "description = \"x\"\nprogram = \"/bin/bash\"\nargs = [\"script\"]\n",
        "description = \"x\"\nprogram = \"/usr/bin/env\"\nargs = [\"sh\"]\n",
        "description = \"x\"\nprogram = \"python3\"\nargs = [\"-c\", \"print('{ref}')\"]\n",
        "description = \"x\"\nprogram = \"fab deploy\"\n",
        "description = \"x\"\nprogram = \"fab\"\nargs = [\"{nope}\"]\n",
    ] {
        assert!(
            Recipe::from_source(file, "evil", source).is_err(),
            "{source}"
        );
    }
}

#[test]
fn detection_follows_markers() {
    let dir = tempfile::tempdir().unwrap();
    let recipes = shipped();
    assert!(recipes.choose(None, dir.path()).is_err());
    std::fs::write(dir.path().join("fabfile.py"), "").unwrap();
    assert_eq!(recipes.choose(None, dir.path()).unwrap().name, "fabric");
    std::fs::write(dir.path().join("Capfile"), "").unwrap();
    assert_eq!(recipes.choose(None, dir.path()).unwrap().name, "capistrano");
    assert_eq!(
        recipes.choose(Some("fabric2"), dir.path()).unwrap().name,
        "fabric2"
    );
}

/// Python buffers stdout written to a pipe, so without PYTHONUNBUFFERED a deploy's prints would land in
/// the log after its errors. Every shipped recipe that runs a Python program sets it.
#[test]
fn python_recipes_run_unbuffered() {
    let recipes = shipped();
    for name in ["fabric", "fabric2", "ansible"] {
        let recipe = recipes.get(name).unwrap();
        assert_eq!(
            recipe.env.get("PYTHONUNBUFFERED").map(Template::source),
            Some("1"),
            "{name}"
        );
    }
}

/// Only the Fabric 1 recipe may have Fabric 1 installed for it: Fabric 2's program is also `fab`.
#[test]
fn only_fabric1_recipes_get_fabric1_installed() {
    let recipes = shipped();
    assert!(recipes.get("fabric").unwrap().drives_fabric1());
    for other in ["fabric2", "capistrano", "shell", "ansible"] {
        assert!(!recipes.get(other).unwrap().drives_fabric1(), "{other}");
    }
}
