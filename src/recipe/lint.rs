//! Warnings about a recipe that is valid but probably not what its author meant; found
//! at load time, on the YAML as written, and shown before a build starts.
//!
//! So far one: `${NAME}` in a value xbake never expands. Exec-form commands (`run:`,
//! `cmd:`, `entrypoint:`, `shell:` and a healthcheck test as lists) reach the program
//! as written, with no shell in between to expand them either, as in a Dockerfile.

use serde_saphyr::Spanned;

use super::error::Pos;
use super::expand::first_reference;
use super::schema::{Command, RawRecipe, StepValue};

/// `(where, message)` for each exec-form value holding a `${…}`, in document order.
pub(super) fn unexpanded(raw: &RawRecipe) -> Vec<(Pos, String)> {
    let mut found = Vec::new();
    let stage_steps = raw
        .stages
        .0
        .iter()
        .flat_map(|(_, stage)| stage.value.steps.iter().flatten());
    for step in raw.steps.iter().flatten().chain(stage_steps) {
        for (_, value) in &step.value.entries {
            if let StepValue::Run(command) = value {
                check(command, "this run step", &mut found);
            }
        }
    }
    if let Some(config) = &raw.config {
        let fields = [
            (&config.entrypoint, "config.entrypoint"),
            (&config.cmd, "config.cmd"),
            (&config.shell, "config.shell"),
        ];
        for (command, what) in fields {
            if let Some(command) = command {
                check(command, what, &mut found);
            }
        }
        if let Some(healthcheck) = &config.healthcheck {
            check(
                &healthcheck.value.test,
                "config.healthcheck.test",
                &mut found,
            );
        }
    }
    found.sort_by_key(|(at, _)| *at);
    found
}

fn check(command: &Spanned<Command>, what: &str, found: &mut Vec<(Pos, String)>) {
    let Command::Exec(argv) = &command.value else {
        return;
    };
    if let Some(reference) = argv.iter().find_map(|arg| first_reference(arg)) {
        found.push((
            Pos::of(&command.referenced),
            format!("{what} is exec form and is not expanded; {reference} stays literal"),
        ));
    }
}
