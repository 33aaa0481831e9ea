-- Keygate schema v2: usage policies (issue 14). A policy's limits are a
-- jsonb list of {"name", "limit", "length_us"}; its allowed IPs masked
-- prefixes. Existing accounts and keys get none: they limit nothing.

ALTER TABLE accounts
    ADD COLUMN limits      jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN allowed_ips cidr[] NOT NULL DEFAULT '{}';

ALTER TABLE keys
    ADD COLUMN limits      jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN allowed_ips cidr[] NOT NULL DEFAULT '{}';

-- A key's credits, in a row of their own: every lease updates it and the
-- key's row stays as it is (the free space lets those updates stay on
-- their page). No row: the key is unlimited.
CREATE TABLE credits (
    key_id          text COLLATE "C" PRIMARY KEY REFERENCES keys (id) ON DELETE CASCADE,
    remaining       bigint NOT NULL CHECK (remaining >= 0),
    refill_amount   bigint CHECK (refill_amount > 0),
    refill_interval text CHECK (refill_interval IN ('daily', 'weekly', 'monthly')),
    refill_day      integer NOT NULL DEFAULT 0,
    next_refill     timestamptz,
    -- Changes whenever the balance is set rather than spent (refill, edit).
    epoch           bigint NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((refill_amount IS NULL) = (refill_interval IS NULL))
) WITH (fillfactor = 50);

-- The shared counts of rate windows, added to by every node's syncs. No
-- foreign key: a subject is a key or an account, and counts end by expiry
-- (two window lengths after their start).
CREATE TABLE window_counts (
    subject    text COLLATE "C" NOT NULL,
    name       text COLLATE "C" NOT NULL,
    length_us  bigint NOT NULL,
    start      timestamptz NOT NULL,
    count      bigint NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (subject, name, length_us, start)
) WITH (fillfactor = 70);
CREATE INDEX window_counts_expires_at_idx ON window_counts (expires_at);
