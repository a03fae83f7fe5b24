//! Fakes of the services zbot talks to, speaking their real wire protocols on 127.0.0.1.

pub mod github;
