//! Deploy recipes: the shipped ones load and render to argv, and a recipe cannot become a shell.

use std::path::Path;

use zbot::domain::{AppName, DeploymentId, Environment, GitRef, Hosts, Repository, Sha, Task};
use zbot::recipe::{Invocation, Recipe, Recipes, RenderInput};

use crate::support::repo_root;

/// Renders `recipe` for these values, each parsed into its domain type first (as zbot does at its
/// edges): a value that does not parse is refused before any recipe sees it.
fn render(
    recipe: &Recipe,
    git_ref: &str,
    environment: &str,
    hosts: Option<&str>,
) -> Result<Invocation, String> {
    let git_ref: GitRef = git_ref.parse().map_err(|e| format!("{e}"))?;
    let environment: Environment = environment.parse().map_err(|e| format!("{e}"))?;
    let hosts: Option<Hosts> = hosts
        .map(str::parse)
        .transpose()
        .map_err(|e| format!("{e}"))?;
    let sha: Sha = "f95f852bd8fca8fcc58a9a2d6c842781e32a215e".parse().unwrap();
    let app: AppName = "adxstat".parse().unwrap();
    let repository: Repository = "octo/adxstat".parse().unwrap();
    recipe.render(&RenderInput {
        environment: &environment,
        git_ref: &git_ref,
        sha: &sha,
        task: &Task::deploy(),
        hosts: hosts.as_ref(),
        app: &app,
        repository: &repository,
        deployment_id: DeploymentId(42),
    })
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
            "-H",
            "web1,web2",
            "-R",
            "production",
            "deploy:branch_name=v0.0.1"
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
            recipe.env.get("PYTHONUNBUFFERED").map(String::as_str),
            Some("1"),
            "{name}"
        );
    }
}
