//! The `git` write-back of an update: where it commits, what the Application runs there, and
//! the commit itself.

use super::*;

impl ArgoCdTarget {
    /// The configuration of `app`: its selection's, else its annotations' (with their
    /// errors, which [`Self::read`] reports); `None` when it has neither.
    pub(super) fn config(
        &self,
        app: &DynamicObject,
        selection: Option<&Selection>,
    ) -> Option<std::result::Result<ApplicationConfig, Vec<AnnotationError>>> {
        match selection.and_then(|s| s.config.as_ref()) {
            Some(config) => Some(Ok(config.clone())),
            None => {
                let annotations = app.metadata.annotations.as_ref()?;
                if !ApplicationConfig::is_configured(annotations) {
                    return None;
                }
                Some(ApplicationConfig::parse(annotations))
            }
        }
    }

    /// A problem about Application `app`.
    pub(super) fn app_problem(&self, app: &DynamicObject, p: GitProblem) -> Problem {
        Problem {
            kind: PROBLEM_KIND.into(),
            namespace: app.metadata.namespace.clone().unwrap_or_default(),
            name: app.metadata.name.clone().unwrap_or_default(),
            key: p.key,
            value: p.value,
            reason: p.reason,
        }
    }

    /// Where the `git` write-back of `app` goes, and its credentials.
    pub(super) async fn git_destination(
        &self,
        app: &DynamicObject,
        config: &ApplicationConfig,
    ) -> std::result::Result<(git::Destination, keel_git::GitAuth), GitProblem> {
        let name = app.metadata.name.as_deref().unwrap_or_default();
        let destination = git::destination(name, &app.data, &config.git)?;
        let WriteBack::Git { credentials } = &config.write_back else {
            return Err(GitProblem::new(
                crate::annotations::WRITE_BACK_METHOD,
                config.write_back.to_string(),
                "not the git write-back",
            ));
        };
        let namespace = match &self.git.argocd_namespace {
            Some(ns) => ns.clone(),
            None => app.metadata.namespace.clone().unwrap_or_default(),
        };
        let auth = git::auth(&self.client, &namespace, credentials, &destination.url).await?;
        Ok((destination, auth))
    }

    /// The commit of a write-back to `destination`, pushed to `push` when given.
    pub(super) fn branch_commit(
        &self,
        destination: &git::Destination,
        auth: keel_git::GitAuth,
        push: Option<String>,
    ) -> keel_git::BranchCommit {
        let dir = self.git.workdir.join(git::workdir_name(&destination.url));
        let mut commit = keel_git::BranchCommit::new(&destination.url, dir)
            .with_auth(auth)
            .with_author(&self.git.author.0, &self.git.author.1);
        if let Some(branch) = &destination.branch {
            commit = commit.with_branch(branch);
        }
        if let Some(push) = push {
            commit = commit.with_push_branch(push);
        }
        commit
    }

    /// `app` as it runs with its `git` write-back file at the branch head (the push branch
    /// when it is named without template and exists, else the base branch): the file's
    /// parameters or images come before the Application's own.
    pub(super) async fn git_view(
        &self,
        app: &DynamicObject,
        config: &ApplicationConfig,
    ) -> std::result::Result<DynamicObject, GitProblem> {
        let (destination, auth) = self.git_destination(app, config).await?;
        let push = destination
            .push_branch
            .as_ref()
            .and_then(|t| t.literal())
            .map(str::to_owned);
        let content = self
            .branch_commit(&destination, auth, push)
            .read(vec![destination.file.clone()])
            .await
            .map_err(|e| {
                GitProblem::new(
                    crate::annotations::WRITE_BACK_METHOD,
                    config.write_back.to_string(),
                    format!("reading {} failed: {e}", destination.file),
                )
            })?
            .pop()
            .flatten();
        let Some(content) = content else {
            return Ok(app.clone());
        };
        let data = git::overlay(
            &app.data,
            &destination,
            &config.git.target,
            &content,
            &config.images,
        )
        .map_err(|reason| {
            GitProblem::new(
                git::WRITE_BACK_TARGET,
                config.git.target.to_string(),
                reason,
            )
        })?;
        let mut viewed = app.clone();
        viewed.data = data;
        Ok(viewed)
    }

    /// Applies `plan` to an Application with the `git` write-back: one commit of its
    /// write-back file, pushed; see the crate docs.
    pub(super) async fn apply_git(
        &self,
        plan: &UpdatePlan,
        app: &DynamicObject,
        config: ApplicationConfig,
        alias: &str,
        selection: Option<Selection>,
    ) -> Result<Attempt> {
        let ns = app.metadata.namespace.clone().unwrap_or_default();
        let name = app.metadata.name.clone().unwrap_or_default();
        let invalid = |p: GitProblem| {
            Error::InvalidInput(keel_core::ParseError::new(
                "git write-back setting",
                p.value,
                format!("{} of Application {ns}/{name}: {}", p.key, p.reason),
            ))
        };
        let Some(image) = config.images.iter().find(|i| i.alias == alias).cloned() else {
            return Err(Error::untracked(&plan.id, &self.name));
        };
        let (destination, auth) = self.git_destination(app, &config).await.map_err(invalid)?;
        let change = git::change(&image, &plan.current, &plan.new);
        let push = match &destination.push_branch {
            Some(template) => Some(template.render(std::slice::from_ref(&change)).map_err(
                |reason| {
                    invalid(GitProblem::new(
                        git::GIT_BRANCH,
                        template.to_string(),
                        reason,
                    ))
                },
            )?),
            None => None,
        };
        let message = git::message(&self.git.message, &name, &image, &change);
        let commit = self.branch_commit(&destination, auth, push);
        let data = app.data.clone();
        let target = config.git.target.clone();
        let (id, current, new) = (plan.id.clone(), plan.current.clone(), plan.new.clone());
        let written = image.clone();
        let outcome = commit
            .commit(message, move |files| {
                let content = files.read(&destination.file)?;
                let conflict = |reason: String| Error::Conflict {
                    action: format!("update {id}"),
                    reason,
                };
                let running =
                    git::running(&data, &destination, &target, content.as_deref(), &written)
                        .map_err(conflict)?;
                if running == new {
                    return Ok(());
                }
                if running != current {
                    return Err(conflict(format!(
                        "it runs {running} now, not {current} as planned"
                    )));
                }
                let text = git::write(
                    content.as_deref().unwrap_or(""),
                    &destination,
                    &target,
                    &written,
                    &new,
                )
                .map_err(conflict)?;
                files.write(&destination.file, text)
            })
            .await?;
        match outcome {
            keel_git::CommitOutcome::Pushed { commit, branch } => {
                info!(%commit, %branch, "pushed");
                if let Some(selection) = selection {
                    self.record_update(&selection, &image, plan).await;
                }
                Ok(Attempt::Done(ApplyOutcome::Applied))
            }
            _ => Ok(Attempt::Done(ApplyOutcome::AlreadyCurrent)),
        }
    }
}
