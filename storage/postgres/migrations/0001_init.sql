-- Keygate schema v1: the whole contract of DESIGN.md. Ids sort in byte
-- order (COLLATE "C") because they encode their creation time.

CREATE TABLE accounts (
    id          text COLLATE "C" PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    kind        text NOT NULL CHECK (kind IN ('user', 'service')),
    team        text NOT NULL DEFAULT '',
    scopes      text[] NOT NULL DEFAULT '{}',
    disabled    boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE keys (
    id          text COLLATE "C" PRIMARY KEY,
    account_id  text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name        text NOT NULL,
    description text NOT NULL DEFAULT '',
    tags        jsonb NOT NULL DEFAULT '{}',
    scopes      text[],                  -- NULL: the account's scopes, live
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX keys_account_id_idx ON keys (account_id, id);
CREATE INDEX keys_tags_idx ON keys USING gin (tags jsonb_path_ops);

CREATE TABLE tokens (
    id           text COLLATE "C" PRIMARY KEY,
    key_id       text COLLATE "C" NOT NULL REFERENCES keys (id) ON DELETE CASCADE,
    hash         bytea NOT NULL UNIQUE CHECK (length(hash) = 32),  -- SHA-256 of the value
    hint         text NOT NULL,
    name         text NOT NULL DEFAULT '',
    description  text NOT NULL DEFAULT '',
    tags         jsonb NOT NULL DEFAULT '{}',
    expires_at   timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    -- Set when a rotation superseded this token; it stops at expires_at.
    rotated_to   text COLLATE "C" REFERENCES tokens (id) ON DELETE SET NULL,
    rotated_at   timestamptz
);
CREATE INDEX tokens_key_id_idx ON tokens (key_id, id);

-- No foreign keys: events outlive what they describe.
CREATE TABLE audit_events (
    id         text COLLATE "C" PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    actor      text NOT NULL,
    action     text NOT NULL,
    target     text NOT NULL,
    account_id text COLLATE "C" NOT NULL DEFAULT '',  -- the account the target belongs to
    details    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_account_id_idx ON audit_events (account_id, id);
CREATE INDEX audit_events_target_idx ON audit_events (target, id);
CREATE INDEX audit_events_actor_idx ON audit_events (actor, id);
