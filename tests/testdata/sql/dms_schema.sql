-- A document-management (QLVB&ĐH) database, reduced to what the sql examples read
-- (config/examples/sql_dms.yaml). Real products name things differently: adapt the queries, not the agent.

CREATE TABLE agencies (
    org_id      text PRIMARY KEY,            -- electronic agency code, Decision 20/2020/QĐ-TTg
    name        text NOT NULL
);

-- Outgoing documents as the clerk registers them (Decree 30/2020: registered the same or the next working day).
CREATE TABLE outgoing_documents (
    id              bigserial PRIMARY KEY,
    agency_id       text NOT NULL REFERENCES agencies (org_id),
    number_notation text NOT NULL,           -- số/ký hiệu, e.g. 123/UBND-VP
    registered_at   timestamptz NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('electronic', 'paper')),
    secret          boolean NOT NULL DEFAULT false,   -- secret documents are never counted
    signed          boolean NOT NULL DEFAULT false    -- carries the agency's digital signature
);
CREATE INDEX outgoing_documents_registered ON outgoing_documents (registered_at);

-- The monitoring role: read-only, on these tables only.
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'egov_monitor') THEN
        CREATE ROLE egov_monitor LOGIN PASSWORD 'monitor-test-password';
    END IF;
END $$;
GRANT SELECT ON agencies, outgoing_documents TO egov_monitor;
