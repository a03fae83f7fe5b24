//! Deploy recipes: the shipped ones load and render to argv, and a recipe cannot become a shell.

use std::path::Path;

use zbot::recipe::{Recipe, Recipes, RenderInput};

use crate::support::repo_root;

fn input<'a>(git_ref: &'a str, environment: &'a str, hosts: Option<&'a str>) -> RenderInput<'a> {
    RenderInput {
        environment,
        git_ref,
        sha: "f95f852bd8fca8fcc58a9a2d6c842781e32a215e",
        task: "deploy",
        hosts,
        app: "adxstat",
        repository: "octo/adxstat",
        deployment_id: 42,
    }
}

fn shipped() -> Recipes {
    Recipes::load_dir(&repo_root().join("commands")).expect("the shipped recipes load")
}

#[test]
fn shipped_recipes_render_the_documented_commands() {
    let recipes = shipped();
    let fab = recipes
        .get("fabric")
        .unwrap()
        .render(&input("v0.0.1", "production", None))
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
        .unwrap()
        .render(&input("v0.0.1", "production", Some("web1,web2")))
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
        .unwrap()
        .render(&input("main", "staging", None))
        .unwrap();
    assert_eq!(
        (cap.program.as_str(), cap.args.as_slice()),
        ("cap", &["staging".to_string(), "deploy".to_string()][..])
    );
    assert!(cap.env.contains(&("BRANCH".into(), "main".into())));

    let shell = recipes
        .get("shell")
        .unwrap()
        .render(&input("main", "staging", None))
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
            fabric.render(&input(git_ref, environment, hosts)).is_err(),
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
