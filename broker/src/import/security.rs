//! The security plugins → `[[users]]` and `[[authorization]]`: `simpleAuthenticationPlugin`'s
//! users with their groups, and `authorizationPlugin`'s entries (queue or topic pattern, read,
//! write and admin group lists) with its temporary-destinations entry. JAAS and LDAP are
//! reported (their users live in files or directories this import does not read).

use roxmltree::Node;

use super::ImportError;
use super::out::{Doc, strings};
use super::xml::{Ctx, attr_path, child, children, elements, name, path};

/// ActiveMQ's group lists: comma separated, blanks around names ignored.
fn groups(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect()
}

pub(super) fn map(ctx: &mut Ctx, b: Node, doc: &mut Doc) -> Result<(), ImportError> {
    let Some(plugins) = child(b, "plugins") else {
        return Ok(());
    };
    if let Some(sa) = child(plugins, "simpleAuthenticationPlugin") {
        authentication(ctx, sa, doc)?;
    }
    if let Some(az) = child(plugins, "authorizationPlugin") {
        authorization(ctx, az, doc)?;
    }
    Ok(())
}

fn authentication(ctx: &mut Ctx, sa: Node, doc: &mut Doc) -> Result<(), ImportError> {
    ctx.visit(sa);
    if ctx.bool_attr(sa, "anonymousAccessAllowed")? == Some(true) {
        ctx.unmapped_at(
            attr_path(sa, "anonymousAccessAllowed"),
            "every connection logs in with a user here",
        );
    }
    let mut names: Vec<String> = Vec::new();
    for users in children(sa, "users") {
        ctx.visit(users);
        for u in children(users, "authenticationUser") {
            ctx.visit(u);
            let Some(user) = ctx.attr(u, "username")? else {
                ctx.unmapped(u, "a user without a username");
                continue;
            };
            if user.is_empty() || names.contains(&user) {
                ctx.unmapped(u, format!("user {user:?} is empty or defined twice"));
                continue;
            }
            let password = ctx.attr(u, "password")?.unwrap_or_default();
            let g = ctx
                .attr(u, "groups")?
                .map(|g| groups(&g))
                .unwrap_or_default();
            names.push(user.clone());
            doc.push("users")
                .set("name", user)
                .set("password", password)
                .set("groups", strings(&g));
        }
    }
    if !names.is_empty() {
        ctx.note(
            path(sa),
            "the passwords are copied in clear text (the broker warns at start); `broker passwd` prints a hash to put in their place",
        );
    }
    Ok(())
}

fn authorization(ctx: &mut Ctx, az: Node, doc: &mut Doc) -> Result<(), ImportError> {
    ctx.visit(az);
    let Some(m) = child(az, "map") else {
        return Ok(());
    };
    ctx.visit(m);
    for map in elements(m) {
        if name(map) != "authorizationMap" {
            ctx.unmapped(
                map,
                format!(
                    "{}: only a static authorizationMap is read (no LDAP)",
                    name(map)
                ),
            );
            continue;
        }
        ctx.visit(map);
        for list in children(map, "authorizationEntries") {
            ctx.visit(list);
            for e in elements(list) {
                if name(e) != "authorizationEntry" {
                    continue; // reported by the leftover walk
                }
                ctx.visit(e);
                let queue = ctx.attr(e, "queue")?;
                let topic = ctx.attr(e, "topic")?;
                let t = match (queue, topic) {
                    (Some(q), None) => {
                        let t = doc.push("authorization");
                        t.set("queue", q);
                        t
                    }
                    (None, Some(tp)) => {
                        let t = doc.push("authorization");
                        t.set("topic", tp);
                        t
                    }
                    _ => {
                        ctx.unmapped(e, "an entry needs exactly one of queue and topic");
                        continue;
                    }
                };
                acl(ctx, e, t)?;
            }
        }
        for temp in children(map, "tempDestinationAuthorizationEntry") {
            ctx.visit(temp);
            for e in children(temp, "tempDestinationAuthorizationEntry") {
                ctx.visit(e);
                let t = doc.push("authorization");
                t.set("temporary", true);
                acl(ctx, e, t)?;
            }
        }
    }
    Ok(())
}

/// `read`, `write` and `admin` group lists onto an `[[authorization]]` entry.
fn acl(ctx: &mut Ctx, e: Node, t: &mut super::out::Table) -> Result<(), ImportError> {
    for op in ["read", "write", "admin"] {
        let g = ctx.attr(e, op)?.map(|g| groups(&g)).unwrap_or_default();
        t.set(op, strings(&g));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::groups;

    #[test]
    fn group_lists_split_on_commas() {
        assert_eq!(groups("admins, users ,"), vec!["admins", "users"]);
        assert!(groups("").is_empty());
    }
}
