//! `web_framework`: web frameworks among the installed packages of every ecosystem.
use census_proto::v1::{WebFramework, record::Body};

use super::package::package_key;
use super::{CollectError, Collector, Context, Observation};

#[derive(Debug)]
pub struct WebFrameworkCollector;

/// (ecosystem, package name, framework). Packages of the OS package managers are
/// matched too: a framework installed with apt is still the framework.
const FRAMEWORKS: &[(&str, &str, &str)] = &[
    ("python", "Django", "django"),
    ("python", "django", "django"),
    ("python", "Flask", "flask"),
    ("python", "flask", "flask"),
    ("python", "fastapi", "fastapi"),
    ("python", "tornado", "tornado"),
    ("python", "pyramid", "pyramid"),
    ("python", "bottle", "bottle"),
    ("python", "falcon", "falcon"),
    ("python", "aiohttp", "aiohttp"),
    ("python", "starlette", "starlette"),
    ("python", "sanic", "sanic"),
    ("deb", "python3-django", "django"),
    ("deb", "python3-flask", "flask"),
    ("deb", "python3-tornado", "tornado"),
    ("deb", "ruby-rails", "rails"),
    ("deb", "rails", "rails"),
    ("deb", "php-symfony", "symfony"),
    ("deb", "php-laravel-framework", "laravel"),
    ("rpm", "python3-django", "django"),
    ("rpm", "python3-flask", "flask"),
    ("rpm", "rubygem-rails", "rails"),
    ("npm", "express", "express"),
    ("npm", "koa", "koa"),
    ("npm", "next", "next.js"),
    ("npm", "nuxt", "nuxt"),
    ("npm", "@nestjs/core", "nestjs"),
    ("npm", "fastify", "fastify"),
    ("npm", "@hapi/hapi", "hapi"),
    ("npm", "hapi", "hapi"),
    ("npm", "@angular/core", "angular"),
    ("npm", "@sveltejs/kit", "sveltekit"),
    ("npm", "sails", "sails"),
    ("jar", "spring-webmvc", "spring-mvc"),
    ("jar", "spring-webflux", "spring-webflux"),
    ("jar", "spring-boot", "spring-boot"),
    ("jar", "spring-core", "spring"),
    ("jar", "struts2-core", "struts2"),
    ("jar", "struts-core", "struts"),
    ("jar", "jersey-server", "jersey"),
    ("jar", "resteasy-core", "resteasy"),
    ("jar", "vertx-web", "vert.x"),
    ("jar", "quarkus-core", "quarkus"),
    ("jar", "micronaut-http-server", "micronaut"),
    ("jar", "play_2.13", "play"),
    ("jar", "grails-core", "grails"),
    ("go", "github.com/gin-gonic/gin", "gin"),
    ("go", "github.com/labstack/echo/v4", "echo"),
    ("go", "github.com/gofiber/fiber/v2", "fiber"),
    ("go", "github.com/gorilla/mux", "gorilla-mux"),
    ("go", "github.com/go-chi/chi/v5", "chi"),
    ("go", "github.com/beego/beego/v2", "beego"),
];

impl Collector for WebFrameworkCollector {
    fn kind(&self) -> &'static str {
        "web_framework"
    }

    fn collect(&self, ctx: &Context) -> Result<Vec<Observation>, CollectError> {
        let mut observations = Vec::new();
        for package in ctx.packages()? {
            let found = FRAMEWORKS.iter().find(|(ecosystem, name, _)| {
                *ecosystem == package.ecosystem && *name == package.name
            });
            let Some((_, _, framework)) = found else {
                continue;
            };
            let package_key = package_key(package);
            let body = WebFramework {
                name: framework.to_string(),
                version: package.version.clone(),
                ecosystem: package.ecosystem.clone(),
                package: package_key.clone(),
                location: package.location.clone(),
            };
            observations.push(Observation::new(
                format!("{framework}@{package_key}"),
                Body::WebFramework(body),
            ));
        }
        Ok(observations)
    }
}
