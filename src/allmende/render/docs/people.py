"""The people page and the onboarding page: who does what, and how to join in."""

from __future__ import annotations

from allmende.inventory import derive
from allmende.inventory.hostpaths import service_dir, volume_dir
from allmende.render.docs import hosts as host_pages
from allmende.render.docs.blocks import (
    Block,
    Bullets,
    Code,
    Facts,
    Line,
    Link,
    Page,
    Para,
    Section,
    Step,
    Steps,
    Table,
    Text,
    joined,
    line,
)
from allmende.render.docs.context import (
    Context,
    contact,
    host_link,
    maintainers,
    service_link,
)

#: Example services by what they offer (name, description); the first one not taken is used.
EXAMPLES = (
    ("calendar", "Shared calendar for events and room bookings"),
    ("archive", "Photos and recordings of past events"),
    ("music", "Audio sharing for members' recordings"),
    ("chat", "Chat for members and friends"),
    ("notes", "Collaborative notes for meetings"),
    ("forum", "Discussion forum of the collective"),
)


def people_page(context: Context) -> Page:
    """Return the people page: each person, how to reach them and what they maintain."""
    inventory = context.inventory
    sections: list[Section] = []
    for name in context.people():
        person = inventory.collective.people[name]
        rows: list[tuple[str, Line]] = [("Name in the inventory", line(Code(name)))]
        if person.email:
            rows.append(("Email", contact(person.email)))
        if person.chat:
            rows.append(("Chat", line(Code(person.chat))))
        services = derive.maintained_by(inventory, name)
        rows.append(
            ("Maintains", joined((service_link(s) for s in services), empty="no service yet"))
        )
        sections.append(Section(person.name, (Facts(tuple(rows)),), id=f"person-{name}"))
    orphans = [s for s in context.services() if not inventory.services[s].maintainers]
    if orphans:
        sections.append(
            Section(
                "Services nobody maintains",
                (
                    Para(
                        line(
                            "These services have no ",
                            Code("maintainers"),
                            ": ask ",
                            *contact(inventory.collective.contact) or line("the collective"),
                            " and add yourself if you can look after one.",
                        ),
                        tone="warn",
                    ),
                    Bullets(tuple(line(service_link(s)) for s in orphans)),
                ),
                id="orphans",
            )
        )
    if not sections:
        sections.append(
            Section(
                "Nobody listed",
                (
                    Para(
                        line(
                            "No people in ",
                            Code("allmende.yaml"),
                            " yet: add them under ",
                            Code("people"),
                            ".",
                        )
                    ),
                ),
            )
        )
    return Page(
        key="people",
        title="People",
        lead=line("Who looks after which service, and how to reach them."),
        sections=tuple(sections),
        nav="people",
    )


def _example_host(context: Context) -> str | None:
    """Return the host most services run on (ties: the first name), for the example."""
    ranked = sorted(
        context.hosts(), key=lambda h: (-len(derive.services_on(context.inventory, h)), h)
    )
    return ranked[0] if ranked else None


def example_yaml(context: Context) -> tuple[str, str, str | None]:
    """Return (service name, YAML of an example service built from real names, host).

    The example runs on the host most services run on, is maintained by the first person,
    publishes the first free port of that host (the edge reaches the service there), routes a
    name under the first managed domain when there is one, and is valid as it stands.
    """
    inventory = context.inventory
    name, description = next(
        (e for e in EXAMPLES if e[0] not in inventory.services), ("example", "An example")
    )
    host = _example_host(context)
    domains = inventory.collective.domains
    people = context.people()
    rows: list[tuple[str, str]] = [(f"description: {description}", "what it offers to people")]
    if people:
        rows.append((f"maintainers: [{people[0]}]", "names from people in allmende.yaml"))
    rows += [
        (f"host: {host or 'HOST'}", "a file in hosts/"),
        ("components:", ""),
        ("  app:", ""),
        (f"    image: ghcr.io/example/{name}:1.2.3", "a pinned tag, never latest"),
        ("    ports: {http: 8080}", "inside the container"),
    ]
    port = host_pages.free_port(context, host) if host else 8080
    rows.append((f"    publish: {{http: {port}}}", "free on the host: see Ports"))
    rows += [
        ("    volumes: {data: /data}", f"on the host: {volume_dir(name, 'data')}"),
        ("    healthcheck: {http: /, port: http}", ""),
    ]
    if domains:
        rows += [
            ("routes:", ""),
            (f"  - domain: {name}.{domains[0]}", "TLS and DNS follow from it"),
            ("    to: app.http", ""),
        ]
    defaults = inventory.collective.backup
    if defaults is None or defaults.repository is None:
        rows += [
            ("backup:", ""),
            (f"  repository: /srv/backup/borg/{name}", "a Borg repository; or ssh://..."),
        ]
    rows += [
        ("docs: |", "shown on the service's page"),
        ("  Who uses it, what to do when it breaks, what a newcomer should know.", ""),
    ]
    width = max(len(code) for code, comment in rows if comment) + 2
    text = "\n".join(f"{code:<{width}}# {comment}" if comment else code for code, comment in rows)
    return name, text + "\n", host


def _add_service(context: Context) -> Section:
    inventory = context.inventory
    name, yaml, host = example_yaml(context)
    host_list = joined(
        line(host_link(h), f" ({inventory.hosts[h].engine})") for h in context.hosts()
    ) or line("none yet: add one under ", Code("hosts/"))
    steps = [
        Step(
            line(
                Text("Name it by what it offers people", strong=True),
                ", not by its software: ",
                Code("wiki"),
                ", not ",
                Code("mediawiki"),
                "; ",
                Code("blog"),
                ", not ",
                Code("wordpress"),
                ". The software can change, the service stays.",
            )
        ),
        Step(line("Choose the host it runs on: ", *host_list, ".")),
        Step(
            line(
                "Take a free port on the host from ",
                Link("the port registry", page="ports"),
                ": the edge reaches the service there, and so can people on the host's network.",
            )
        ),
        Step(line("Write ", Code(f"services/{name}.yaml"), ", for example:"), yaml),
        Step(
            line(
                "Secrets go into the encrypted store, never into the YAML; refer to them "
                "by name under the component's ",
                Code("secrets"),
                ":",
            ),
            f"allmende secret set {name}/admin-password",
        ),
        Step(
            line(
                "Check it, and fix what the checks say (each finding names the file, line "
                "and what to do):"
            ),
            "allmende check .",
        ),
        Step(
            line(
                "Look at the result on this site, then commit and open a merge request so "
                "someone else reads it:"
            ),
            f"allmende up .\ngit add services/{name}.yaml\ngit commit -m 'Add {name}'",
        ),
    ]
    if host:
        steps[1] = Step(
            line(
                "Choose the host it runs on: ",
                *host_list,
                f". The example uses {host}, where most services run.",
            )
        )
    return Section("How to add a service", (Steps(tuple(steps)),), id="add-a-service")


def _where_data_lives(context: Context) -> Section:
    inventory = context.inventory
    rows = []
    for name in context.services():
        service = inventory.services[name]
        backup = derive.backup(inventory.collective, name, service)
        for cname, _, volume, path in derive.volumes(name, service):
            rows.append(
                (
                    line(host_link(service.host)),
                    line(Code(path)),
                    line(service_link(name)),
                    line(Code(f"{cname}:{volume.path}")),
                    line(backup.consistency),
                )
            )
    databases = tuple(
        line(Code(ref), f" ({db.engine}) on ", service_link(db.provider))
        for ref, db in sorted(context.databases.items())
    )
    blocks: list[Block] = [
        Para(
            line(
                "Each volume lives on its service's host under ",
                Code(f"{service_dir('<service>')}/"),
                " unless the service says otherwise (and then the checks ask it to say why).",
            )
        ),
        Table(
            ("Host", "Host path", "Service", "Mounted at", "Backup"),
            tuple(
                sorted(
                    rows,
                    key=lambda r: ("".join(i.text for i in r[0]), "".join(i.text for i in r[1])),
                )
            ),
            empty="No volumes anywhere yet.",
        ),
    ]
    if databases:
        blocks.append(
            Para(
                line(
                    "Databases, dumped and restored by their server (see ",
                    Link("databases", page="databases"),
                    "):",
                )
            )
        )
        blocks.append(Bullets(databases))
    return Section("Where data lives", tuple(blocks), id="data")


def _who_to_ask(context: Context) -> Section:
    inventory = context.inventory
    rows = tuple((line(service_link(s)), maintainers(context, s)) for s in context.services())
    reach = contact(inventory.collective.contact)
    blocks: list[Block] = []
    if reach:
        blocks.append(Para(line("For anything about the servers as a whole: ", *reach, ".")))
    blocks.append(Table(("Service", "Ask"), rows, empty="No services yet."))
    blocks.append(
        Para(line("Everyone and what they look after: ", Link("people", page="people"), "."))
    )
    return Section("Who to ask", tuple(blocks), id="ask")


def _when_it_breaks(context: Context) -> Section:
    items = (
        line(
            "Each service's page says where it runs, who maintains it, where its data lives "
            "and, under ",
            Text("Restore", strong=True),
            ", the exact commands to get its data back from the backup.",
        ),
        line(
            "Which port goes where: ",
            Link("the port registry", page="ports"),
            "; which name goes where: ",
            Link("domains", page="domains"),
            ".",
        ),
        line(
            "Before changing anything, run ",
            Code("allmende check ."),
            ": it names every problem with its file, line and what to do.",
        ),
    )
    return Section("When something breaks", (Bullets(items),), id="breaks")


def onboarding_page(context: Context) -> Page:
    """Return the onboarding page: how things are kept, adding a service, data, people."""
    inventory = context.inventory
    facts = Facts(
        (
            (
                "The inventory",
                line(
                    "one Git repository of small YAML files: ",
                    Code("allmende.yaml"),
                    ", ",
                    Code("hosts/"),
                    ", ",
                    Code("services/"),
                    ", ",
                    Code("zones/"),
                    ", ",
                    Code("secrets/"),
                    " (encrypted)",
                ),
            ),
            (
                "This site",
                line(
                    "generated from it by ",
                    Code("allmende up"),
                    " (or ",
                    Code("allmende docs"),
                    "): change the YAML, not the pages",
                ),
            ),
            ("Hosts", line(str(len(inventory.hosts)))),
            ("Services", line(str(len(inventory.services)))),
        )
    )
    return Page(
        key="onboarding",
        title="Onboarding",
        lead=line(
            f"New to the servers of {inventory.collective.name}? Start here: how "
            "everything is written down, how to add a service, where data lives and "
            "whom to ask."
        ),
        sections=(
            Section("How things are kept", (facts,), id="kept"),
            _add_service(context),
            _where_data_lives(context),
            _who_to_ask(context),
            _when_it_breaks(context),
        ),
        nav="onboarding",
    )
