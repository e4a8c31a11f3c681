"""A fictional short-video app ("Clipstream") whose data the demo and the tests erase.

The application database has users, videos, comments, follows and device tokens linked by foreign keys; the object
store keeps uploads per user. Neighbours with look-alike identifiers are planted beside the child: their data must
survive every erasure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

import psycopg
from psycopg import sql

APP_TABLES = """
CREATE TABLE {schema}.users (
    id bigint PRIMARY KEY,
    username text NOT NULL,
    email text,
    phone text
);
CREATE TABLE {schema}.videos (
    id bigint PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES {schema}.users (id),
    title text NOT NULL
);
CREATE TABLE {schema}.comments (
    id bigint PRIMARY KEY,
    video_id bigint NOT NULL REFERENCES {schema}.videos (id),
    author_id bigint NOT NULL REFERENCES {schema}.users (id),
    body text NOT NULL
);
CREATE TABLE {schema}.follows (
    follower_id bigint NOT NULL REFERENCES {schema}.users (id),
    followee_id bigint NOT NULL REFERENCES {schema}.users (id),
    PRIMARY KEY (follower_id, followee_id)
);
CREATE TABLE {schema}.device_tokens (
    id bigint PRIMARY KEY,
    user_id bigint NOT NULL REFERENCES {schema}.users (id),
    token text NOT NULL
);
"""

APP_MAPPING = {
    "subject": {"table": "users", "key": "id", "match": {"user_id": "id", "email": "email", "phone": "phone"}},
    "tables": [
        {"table": "videos", "key": "id", "references": {"user_id": "users"}},
        {"table": "comments", "key": "id", "references": {"video_id": "videos", "author_id": "users"}},
        {"table": "follows", "references": {"follower_id": "users", "followee_id": "users"}},
        {"table": "device_tokens", "key": "id", "references": {"user_id": "users"}},
    ],
}


@dataclass(frozen=True)
class Person:
    user_id: int
    username: str
    email: str | None = None
    phone: str | None = None
    videos: int = 2
    device_tokens: int = 1


# The child and the neighbours whose look-alike identifiers must not be caught by her erasure.
CHILD = Person(1, "sunny.day", "Sunny.Day+clips@example.org", "+44 7700 900123", videos=3, device_tokens=2)
NEIGHBOURS = (
    Person(10, "sunny.day0", "sunny.day+clips@example.org", "+44 7700 900124"),  # user 10; same email, other case
    Person(100, "sunny_day", "Sunny.Day@example.org", "+44 7700 900125"),  # email without the plus tag
    Person(11, "rain.cloud", "rain.cloud@example.org", None),
)


def create_app_schema(conn: psycopg.Connection, schema: str) -> None:
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    ddl = APP_TABLES.replace("{schema}", sql.Identifier(schema).as_string(conn))
    for statement in filter(str.strip, ddl.split(";")):
        conn.execute(statement.encode())


def seed_people(conn: psycopg.Connection, schema: str, people: Iterable[Person]) -> None:
    """Each person gets videos and device tokens; everyone follows and comments on everyone else."""
    people = list(people)

    def table(name: str) -> sql.Identifier:
        return sql.Identifier(schema, name)

    video_ids: dict[int, list[int]] = {}
    for p in people:
        conn.execute(
            sql.SQL("INSERT INTO {} (id, username, email, phone) VALUES (%s, %s, %s, %s)").format(table("users")),
            [p.user_id, p.username, p.email, p.phone],
        )
        video_ids[p.user_id] = [p.user_id * 1000 + n for n in range(p.videos)]
        for vid in video_ids[p.user_id]:
            conn.execute(
                sql.SQL("INSERT INTO {} (id, user_id, title) VALUES (%s, %s, %s)").format(table("videos")),
                [vid, p.user_id, f"clip {vid}"],
            )
        for n in range(p.device_tokens):
            conn.execute(
                sql.SQL("INSERT INTO {} (id, user_id, token) VALUES (%s, %s, %s)").format(table("device_tokens")),
                [p.user_id * 1000 + n, p.user_id, f"tok-{p.user_id}-{n}"],
            )
    comment_id = 1
    for author in people:
        for owner in people:
            if owner is author:
                continue
            conn.execute(
                sql.SQL("INSERT INTO {} (follower_id, followee_id) VALUES (%s, %s)").format(table("follows")),
                [author.user_id, owner.user_id],
            )
            for vid in video_ids[owner.user_id][:1]:
                conn.execute(
                    sql.SQL("INSERT INTO {} (id, video_id, author_id, body) VALUES (%s, %s, %s, %s)").format(
                        table("comments")
                    ),
                    [comment_id, vid, author.user_id, "nice"],
                )
                comment_id += 1


def count_rows(conn: psycopg.Connection, schema: str) -> dict[str, int]:
    counts = {}
    for name in ("users", "videos", "comments", "follows", "device_tokens"):
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))).fetchone()
        counts[name] = int(row[0]) if row else 0
    return counts


def upload_keys(person: Person) -> list[str]:
    """Objects the app keeps for a person: uploads under a per-user prefix and one avatar."""
    return [f"uploads/{person.user_id}/clip-{n}.mp4" for n in range(person.videos)] + [f"avatars/{person.user_id}.jpg"]


S3_KEY_TEMPLATES = ["uploads/{user_id}/", "avatars/{user_id}.jpg"]


# -- a class of children: the accounts a class order ("every child under 13 on the cutoff") reaches -----------------

CLASS_CHILDREN = 300
CLASS_TABLES = """
CREATE TABLE {schema}.users (id bigint PRIMARY KEY, email text, birth_date date NOT NULL, tenant text NOT NULL);
CREATE TABLE {schema}.videos (id bigserial PRIMARY KEY, user_id bigint NOT NULL REFERENCES {schema}.users (id));
"""


def class_email(user_id: int) -> str:
    return f"pupil{user_id}@example.org"


def seed_class(conn: psycopg.Connection, schema: str, cutoff: date) -> dict[str, list[int]]:
    """Children under 13 on the cutoff (tenant uk, two videos each) and their neighbours just outside the class:
    a 13th birthday on the cutoff, another tenant with a look-alike address, older users. Returns ids by group."""
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    ddl = CLASS_TABLES.replace("{schema}", sql.Identifier(schema).as_string(conn))
    for statement in filter(str.strip, ddl.split(";")):
        conn.execute(statement.encode())

    def born(years: int, days: int = 0) -> date:
        return date(cutoff.year - years, cutoff.month, cutoff.day) + timedelta(days=days)

    groups: dict[str, list[int]] = {"child": [], "birthday_on_cutoff": [], "other_tenant": [], "older": []}
    rows = []
    for n in range(CLASS_CHILDREN):
        uid = 5000 + n
        rows.append((uid, class_email(uid), born(12, -(n % 360)), "uk"))
        groups["child"].append(uid)
    for n in range(10):
        uid = 7000 + n  # thirteen on the cutoff day itself: no longer under 13
        rows.append((uid, f"pupil{5000 + n}@example.org.uk", born(13), "uk"))
        groups["birthday_on_cutoff"].append(uid)
        uid = 8000 + n  # the same age on another tenant, an address differing only in case
        rows.append((uid, class_email(5000 + n).capitalize(), born(12), "us"))
        groups["other_tenant"].append(uid)
        uid = 50000 + n  # an id a child's id is a prefix of
        rows.append((uid, f"teen{uid}@example.org", born(15), "uk"))
        groups["older"].append(uid)
    with conn.cursor() as cur:
        cur.executemany(sql.SQL("INSERT INTO {} VALUES (%s, %s, %s, %s)").format(sql.Identifier(schema, "users")), rows)
        cur.execute(
            sql.SQL("INSERT INTO {} (user_id) SELECT id FROM {}, generate_series(1, 2)").format(
                sql.Identifier(schema, "videos"), sql.Identifier(schema, "users")
            )
        )
    return groups


def class_remaining(conn: psycopg.Connection, schema: str, ids: list[int]) -> int:
    row = conn.execute(
        sql.SQL("SELECT count(*) FROM {} WHERE id = ANY(%s)").format(sql.Identifier(schema, "users")), [ids]
    ).fetchone()
    return int(row[0]) if row else 0
