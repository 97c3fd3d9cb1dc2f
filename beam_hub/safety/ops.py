"""What TensorFlow ops can do outside the tensors they are given: the audit's table.

Each risky op has a kind and a severity. Kinds: ``file write``, ``python call`` and ``network``
are high (a module that writes files, runs Python or talks to hosts does more than compute);
``file read`` and ``file listing`` are medium (a module may read its own assets, which the scan
recognises; anything else it reads comes from the worker's disk); ``custom op`` (an op the
installed TensorFlow does not know: native code nobody here reviewed) is medium; a serialized graph
the scan cannot read (it does not parse, or nests graphs too deep) is high.
"""

from __future__ import annotations

HIGH, MEDIUM = "high", "medium"

FILE_READ, FILE_WRITE, FILE_LISTING = "file read", "file write", "file listing"
PYTHON_CALL, NETWORK, CUSTOM_OP = "python call", "network", "custom op"
UNSCANNABLE = (
    "unscannable graph"  # a serialized graph that does not parse, or graphs or calls nested too deep
)

SEVERITY = {
    FILE_WRITE: HIGH,
    PYTHON_CALL: HIGH,
    NETWORK: HIGH,
    FILE_READ: MEDIUM,
    FILE_LISTING: MEDIUM,
    CUSTOM_OP: MEDIUM,
    UNSCANNABLE: HIGH,
}

_KINDS = {
    FILE_READ: (
        "ReadFile",
        "Restore",
        "RestoreSlice",
        "RestoreV2",
        "InitializeTableFromTextFile",
        "InitializeTableFromTextFileV2",
        "ImmutableConst",
        "TFRecordDataset",
        "TFRecordDatasetV2",
        "TextLineDataset",
        "FixedLengthRecordDataset",
        "FixedLengthRecordDatasetV2",
        "CSVDataset",
        "CSVDatasetV2",
        "ExperimentalCSVDataset",
        "LMDBDataset",
        "ExperimentalLMDBDataset",
        "SqlDataset",
        "ExperimentalSqlDataset",
        "LoadDataset",
        "ExperimentalLoadDataset",
        "WholeFileReader",
        "WholeFileReaderV2",
        "TextLineReader",
        "TextLineReaderV2",
        "TFRecordReader",
        "TFRecordReaderV2",
        "FixedLengthRecordReader",
        "FixedLengthRecordReaderV2",
        "LMDBReader",
        "DecodeProtoV2",  # descriptor_source may name a file
    ),
    FILE_WRITE: (
        "WriteFile",
        "Save",
        "SaveSlices",
        "SaveV2",
        "MergeV2Checkpoints",
        "SaveDataset",
        "SaveDatasetV2",
        "ExperimentalSaveDataset",
        "SnapshotDataset",
        "SnapshotDatasetV2",
        "SnapshotChunkDataset",
        "DatasetToTFRecord",
        "ExperimentalDatasetToTFRecord",
        "CreateSummaryFileWriter",
        "CreateSummaryDbWriter",
        "WriteSummary",
        "WriteScalarSummary",
        "WriteHistogramSummary",
        "WriteImageSummary",
        "WriteAudioSummary",
        "WriteGraphSummary",
        "WriteRawProtoSummary",
        "ImportEvent",
        "DebugIdentity",
        "DebugIdentityV2",
        "DebugIdentityV3",
        "DebugNanCount",
        "DebugNumericSummary",
        "DebugNumericSummaryV2",
    ),
    FILE_LISTING: (
        "MatchingFiles",
        "MatchingFilesDataset",
        "ExperimentalMatchingFilesDataset",
    ),
    PYTHON_CALL: ("PyFunc", "PyFuncStateless", "EagerPyFunc"),
    NETWORK: (
        "DataServiceDataset",
        "DataServiceDatasetV2",
        "DataServiceDatasetV3",
        "DataServiceDatasetV4",
        "RegisterDataset",
        "RegisterDatasetV2",
        "DistributedSave",
        "RpcClient",
        "RpcCall",
        "RpcServer",
        "RpcServerStart",
        "RpcServerRegister",
        "Rpc",
        "TryRpc",
    ),
}
OP_KIND = {op: kind for kind, ops in _KINDS.items() for op in ops}

#: what the checkpoint saver of every SavedModel runs (its save and restore functions), with the
#: inputs that name files: those must come from the saver's own file name for the op to be expected
SAVER_OPS = {
    "SaveV2": (0,),
    "RestoreV2": (0,),
    "Save": (0,),
    "Restore": (0,),
    "SaveSlices": (0,),
    "RestoreSlice": (0,),
    "MergeV2Checkpoints": (0, 1),
}
#: ops through which a checkpoint path is built from the saver's file name (their input 0, or
#: every input for Pack)
SAVER_PATH_OPS = frozenset(
    {"Identity", "PlaceholderWithDefault", "StringJoin", "ShardedFilename", "ShardedFilespec", "Pack"}
)

#: ops that read a file named by one of their inputs (op -> that input's position): reading one of
#: the module's own assets is not flagged
ASSET_READERS = {
    "InitializeTableFromTextFile": 1,
    "InitializeTableFromTextFileV2": 1,
    "ReadFile": 0,
    "TextLineDataset": 0,
}

#: ops that call a function named in their ``f`` attribute
CALL_OPS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})

# Ops that live outside core TensorFlow, by name prefix, and the package that registers them.
CUSTOM_OP_PACKAGES = (
    ("Addons>", "tensorflow_addons"),
    ("TFText>", "tensorflow_text"),
    ("SimpleML", "tensorflow_decision_forests"),
    ("Sentencepiece", "tensorflow_text"),
    ("CaseFoldUTF8", "tensorflow_text"),
    ("NormalizeUTF8", "tensorflow_text"),
    ("RegexSplitWithOffsets", "tensorflow_text"),
    ("WordpieceTokenizeWithOffsets", "tensorflow_text"),
    ("FastWordpiece", "tensorflow_text"),
    ("FastBert", "tensorflow_text"),
    ("WhitespaceTokenize", "tensorflow_text"),
    ("UnicodeScriptTokenize", "tensorflow_text"),
    ("SplitMergeTokenize", "tensorflow_text"),
    ("ConstrainedSequence", "tensorflow_text"),
    ("MaxSpanningTree", "tensorflow_text"),
    ("RougeL", "tensorflow_text"),
    ("SentenceFragments", "tensorflow_text"),
    ("TFSentencepiece", "tf_sentencepiece"),
)


def custom_op_package(op: str) -> str | None:
    """The pip package that probably registers ``op``, when its name says so."""
    return next((pkg for prefix, pkg in CUSTOM_OP_PACKAGES if op.startswith(prefix)), None)
