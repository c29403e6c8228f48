"""Ingest: versioned schemas, chunked readers (CSV, Parquet, arrays, records), vectorised
validation into canonical structured arrays, deduplication and the quarantine of rejected rows.
"""

from telcoanalytics.ingest.ingestor import (  # noqa: F401
    DEFAULT_TIME_RANGE_MS,
    DEFAULT_DEDUP_HORIZON_MS,
    DedupSet,
    IngestResult,
    Ingestor,
)

from telcoanalytics.ingest.quarantine import (  # noqa: F401
    UNPARSEABLE,
    MISSING_VALUE,
    NON_FINITE,
    TIME_OUT_OF_RANGE,
    NEGATIVE_DURATION,
    END_BEFORE_START,
    ANSWER_OUTSIDE_CALL,
    BAD_CAUSE,
    OUT_OF_DOMAIN,
    NEGATIVE_COUNTER,
    UNKNOWN_ELEMENT,
    DUPLICATE_ID,
    Quarantine,
)

from telcoanalytics.ingest.readers import (  # noqa: F401
    DEFAULT_CHUNK_ROWS,
    RawChunk,
    CSV_ENGINES,
    read_csv,
    read_parquet,
    read_arrow,
    read_numpy,
    read_dict,
    read_records,
    iter_chunks,
)

from telcoanalytics.ingest.schema import (  # noqa: F401
    PARSE_KINDS,
    SchemaError,
    Rule,
    SchemaVersion,
    parse_column,
    SchemaRegistry,
    default_registry,
    REGISTRY,
    register,
)

__all__ = [
    'DEFAULT_TIME_RANGE_MS',
    'DEFAULT_DEDUP_HORIZON_MS',
    'DedupSet',
    'IngestResult',
    'Ingestor',
    'UNPARSEABLE',
    'MISSING_VALUE',
    'NON_FINITE',
    'TIME_OUT_OF_RANGE',
    'NEGATIVE_DURATION',
    'END_BEFORE_START',
    'ANSWER_OUTSIDE_CALL',
    'BAD_CAUSE',
    'OUT_OF_DOMAIN',
    'NEGATIVE_COUNTER',
    'UNKNOWN_ELEMENT',
    'DUPLICATE_ID',
    'Quarantine',
    'DEFAULT_CHUNK_ROWS',
    'RawChunk',
    'CSV_ENGINES',
    'read_csv',
    'read_parquet',
    'read_arrow',
    'read_numpy',
    'read_dict',
    'read_records',
    'iter_chunks',
    'PARSE_KINDS',
    'SchemaError',
    'Rule',
    'SchemaVersion',
    'parse_column',
    'SchemaRegistry',
    'default_registry',
    'REGISTRY',
    'register',
]
