// The part of Evernote's API (github.com/Evernote/evernote-thrift, src/*.thrift) that the
// stand-in serves: the same names, field ids and types; fields it never reads left out.

enum EDAMErrorCode {
  UNKNOWN = 1, BAD_DATA_FORMAT = 2, PERMISSION_DENIED = 3, INTERNAL_ERROR = 4,
  DATA_REQUIRED = 5, LIMIT_REACHED = 6, QUOTA_REACHED = 7, INVALID_AUTH = 8,
  AUTH_EXPIRED = 9, DATA_CONFLICT = 10, ENML_VALIDATION = 11, SHARD_UNAVAILABLE = 12,
  LEN_TOO_SHORT = 13, LEN_TOO_LONG = 14, TOO_FEW = 15, TOO_MANY = 16,
  UNSUPPORTED_OPERATION = 17, TAKEN_DOWN = 18, RATE_LIMIT_REACHED = 19
}

exception EDAMUserException {
  1: required EDAMErrorCode errorCode,
  2: optional string parameter
}

exception EDAMSystemException {
  1: required EDAMErrorCode errorCode,
  2: optional string message,
  3: optional i32 rateLimitDuration
}

exception EDAMNotFoundException {
  1: optional string identifier,
  2: optional string key
}

struct User {
  1: optional i32 id,
  2: optional string username,
  3: optional string email,
  4: optional string name,
  14: optional string shardId
}

struct LazyMap {
  1: optional set<string> keysOnly,
  2: optional map<string, string> fullMap
}

struct NoteAttributes {
  1: optional i64 subjectDate,
  13: optional string author,
  14: optional string source,
  15: optional string sourceURL,
  16: optional string sourceApplication,
  22: optional string contentClass,
  23: optional LazyMap applicationData
}

struct Note {
  1: optional string guid,
  2: optional string title,
  3: optional string content,
  4: optional binary contentHash,
  5: optional i32 contentLength,
  6: optional i64 created,
  7: optional i64 updated,
  9: optional bool active,
  10: optional i32 updateSequenceNum,
  11: optional string notebookGuid,
  12: optional list<string> tagGuids,
  14: optional NoteAttributes attributes,
  15: optional list<string> tagNames
}

struct Notebook {
  1: optional string guid,
  2: optional string name,
  5: optional i32 updateSequenceNum,
  6: optional bool defaultNotebook
}

struct NoteFilter {
  1: optional i32 order,
  2: optional bool ascending,
  3: optional string words,
  4: optional string notebookGuid,
  5: optional list<string> tagGuids,
  6: optional string timeZone,
  7: optional bool inactive
}

struct NotesMetadataResultSpec {
  2: optional bool includeTitle,
  5: optional bool includeContentLength,
  14: optional bool includeAttributes
}

struct NoteMetadata {
  1: required string guid,
  2: optional string title
}

struct NotesMetadataList {
  1: required i32 startIndex,
  2: required i32 totalNotes,
  3: required list<NoteMetadata> notes
}

service UserStore {
  User getUser(1: string authenticationToken)
    throws (1: EDAMUserException userException, 2: EDAMSystemException systemException),
  string getNoteStoreUrl(1: string authenticationToken)
    throws (1: EDAMUserException userException, 2: EDAMSystemException systemException)
}

service NoteStore {
  list<Notebook> listNotebooks(1: string authenticationToken)
    throws (1: EDAMUserException userException, 2: EDAMSystemException systemException),
  Notebook createNotebook(1: string authenticationToken, 2: Notebook notebook)
    throws (1: EDAMUserException userException, 2: EDAMSystemException systemException),
  NotesMetadataList findNotesMetadata(1: string authenticationToken, 2: NoteFilter filter,
                                      3: i32 offset, 4: i32 maxNotes,
                                      5: NotesMetadataResultSpec resultSpec)
    throws (1: EDAMUserException userException, 2: EDAMSystemException systemException,
            3: EDAMNotFoundException notFoundException),
  Note createNote(1: string authenticationToken, 2: Note note)
    throws (1: EDAMUserException userException, 2: EDAMSystemException systemException,
            3: EDAMNotFoundException notFoundException)
}
