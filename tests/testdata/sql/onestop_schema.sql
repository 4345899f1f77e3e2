-- A one-stop-shop (một cửa điện tử) database, reduced to what the sql examples read
-- (config/examples/sql_onestop.yaml). Field comments give the national portal's sync names (DongBoHoSoMC).

CREATE TABLE dossiers (
    id              bigserial PRIMARY KEY,
    code            text NOT NULL UNIQUE,    -- MaHoSo
    procedure_code  text NOT NULL,           -- MaTTHC
    agency_id       text NOT NULL,           -- DonViXuLy (electronic agency code)
    received_at     timestamptz NOT NULL,    -- NgayTiepNhan
    channel         text NOT NULL CHECK (channel IN ('online', 'direct', 'postal')),   -- HinhThuc
    due_at          timestamptz NOT NULL,    -- NgayHenTra
    finished_at     timestamptz              -- NgayKetThucXuLy (NULL while in progress)
);
CREATE INDEX dossiers_received ON dossiers (received_at);
CREATE INDEX dossiers_finished ON dossiers (finished_at);

DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'egov_monitor') THEN
        CREATE ROLE egov_monitor LOGIN PASSWORD 'monitor-test-password';
    END IF;
END $$;
GRANT SELECT ON dossiers TO egov_monitor;
