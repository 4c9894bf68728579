"""The permission table: which role holds which permission. Routes name one permission each.

A route declares its permission with `allow(PERMISSION)` (server.access.deps); the permission
shows up as the operation's OAuth2 scope in the OpenAPI schema, and
tests/server/test_permissions.py fails for any /api/v1 operation that declares none. To add a
feature, add its permission names here and grant them to roles.
"""

from __future__ import annotations

# Any signed-in user (who am I, sign out, reference data such as recurrence presets).
SESSION = "session"
ORGS_READ = "orgs:read"
ORGS_WRITE = "orgs:write"  # org units and zones
DEVICES_READ = "devices:read"  # devices, their health, telemetry history, schedules, commands
DEVICES_MANAGE = "devices:manage"  # register, edit, rotate credentials, revoke
DEVICES_COMMAND = "devices:command"  # test tone, set volume, restart agent, re-sync
CLIPS_READ = "clips:read"
CLIPS_WRITE = "clips:write"  # upload, TTS, compose, delete
PROGRAMMES_READ = "programmes:read"
# Create and check a programme; roles without PROGRAMMES_EDIT may only create an emergency
# approved at once, and only with the user's can_emergency flag (see may_run_emergency).
PROGRAMMES_CREATE = "programmes:create"
PROGRAMMES_EDIT = "programmes:edit"  # edit, delete and submit drafts
PROGRAMMES_APPROVE = "programmes:approve"  # approve or reject submitted programmes
PROGRAMMES_CANCEL = "programmes:cancel"  # narrowed per role in may_cancel
PLAYS_READ = "plays:read"  # proof of play and reports
# Start and stop live sessions; emergency priority also needs may_run_emergency.
LIVE_BROADCAST = "live:broadcast"
USERS_MANAGE = "users:manage"
AUDIT_READ = "audit:read"
# Bulletins down the tree (issue 14): see the sent and received ones, send (create, cancel
# one's own), approve on the sending side (the editorial board), and receive: a commune's
# inbox, accept, decline, reorder its priority items, its regular slots.
BULLETINS_READ = "bulletins:read"
# The inbox: what was delivered to one's units. Apart from bulletins:read so that a source key
# (which reads only the bulletins it sent) never sees what its unit received.
BULLETINS_INBOX = "bulletins:inbox"
BULLETINS_SEND = "bulletins:send"
BULLETINS_APPROVE = "bulletins:approve"
BULLETINS_RECEIVE = "bulletins:receive"
SOURCES_MANAGE = "sources:manage"  # outside sources and their API keys
# Relay sources (issue 15): the admin-approved streams live and scheduled relay may use.
RELAY_SOURCES_MANAGE = "relay_sources:manage"
# Citizen feedback (issue 16): see the queue of one's units (with the citizen's name and phone),
# and handle it: assign, answer, forward, close, edit the categories. Not in _READ: personal data.
FEEDBACK_READ = "feedback:read"
FEEDBACK_HANDLE = "feedback:handle"

DESCRIPTIONS: dict[str, str] = {
    SESSION: "signed in",
    ORGS_READ: "see org units and zones",
    ORGS_WRITE: "create, change and delete org units and zones",
    DEVICES_READ: "see devices, their health and commands",
    DEVICES_MANAGE: "register, change, re-key and revoke devices",
    DEVICES_COMMAND: "send remote commands to devices",
    CLIPS_READ: "see and play clips",
    CLIPS_WRITE: "upload, synthesise, compose and delete clips",
    PROGRAMMES_READ: "see programmes",
    PROGRAMMES_CREATE: "create programmes (emergencies only without programmes:edit)",
    PROGRAMMES_EDIT: "edit, delete and submit programmes",
    PROGRAMMES_APPROVE: "approve and reject programmes",
    PROGRAMMES_CANCEL: "cancel programmes",
    PLAYS_READ: "see proof of play and reports",
    LIVE_BROADCAST: "start and stop live broadcasts (microphone, relay, file)",
    USERS_MANAGE: "manage users",
    AUDIT_READ: "read the audit log",
    BULLETINS_READ: "see bulletins sent and received, and their deliveries",
    BULLETINS_INBOX: "see the bulletins delivered to one's units and their regular slots",
    BULLETINS_SEND: "send bulletins down the tree",
    BULLETINS_APPROVE: "approve and reject bulletins before they are delivered",
    BULLETINS_RECEIVE: "accept, decline and order bulletins from above; edit regular slots",
    SOURCES_MANAGE: "register outside sources and manage their keys",
    RELAY_SOURCES_MANAGE: "register, change and remove relay sources (stations to relay)",
    FEEDBACK_READ: "see citizens' feedback cases of one's units, with name and phone",
    FEEDBACK_HANDLE: "assign, answer, forward and close feedback cases; edit their categories",
}
PERMISSIONS = frozenset(DESCRIPTIONS)

_READ = frozenset(
    {
        SESSION,
        ORGS_READ,
        DEVICES_READ,
        CLIPS_READ,
        PROGRAMMES_READ,
        PLAYS_READ,
        BULLETINS_READ,
        BULLETINS_INBOX,
    }
)

ROLE_GRANTS: dict[str, frozenset[str]] = {
    "admin": PERMISSIONS,
    "editor": _READ
    | {CLIPS_WRITE, PROGRAMMES_CREATE, PROGRAMMES_EDIT, PROGRAMMES_CANCEL, BULLETINS_SEND},
    "approver": _READ
    | {
        PROGRAMMES_CREATE,
        PROGRAMMES_APPROVE,
        PROGRAMMES_CANCEL,
        LIVE_BROADCAST,
        BULLETINS_SEND,
        BULLETINS_APPROVE,
        BULLETINS_RECEIVE,
        FEEDBACK_READ,
    },
    "operator": _READ
    | {
        PROGRAMMES_CREATE,
        PROGRAMMES_CANCEL,
        LIVE_BROADCAST,
        BULLETINS_RECEIVE,
        FEEDBACK_READ,
        FEEDBACK_HANDLE,
    },
    "technician": _READ | {DEVICES_MANAGE, DEVICES_COMMAND},
    "viewer": _READ,
    # An outside source's service user (server/sources): its key may only send bulletins into
    # its org unit's subtree and read their status; never a person's role.
    "source": frozenset({BULLETINS_SEND, BULLETINS_READ}),
}

# Roles that may run an emergency when the user's can_emergency flag is set (admins always may).
EMERGENCY_ROLES = frozenset({"operator", "approver"})
# What each role may cancel: None = any programme.
_EDITOR_CANCELS = frozenset({"draft", "submitted", "rejected"})


def grants(role: str) -> frozenset[str]:
    """The permissions of a role (none for an unknown role)."""
    return ROLE_GRANTS.get(role, frozenset())


def may(role: str, permission: str) -> bool:
    """True when the role holds the permission."""
    return permission in grants(role)


def may_run_emergency(*, role: str, can_emergency: bool) -> bool:
    """Admins always; operators and approvers when their can_emergency flag is set."""
    return role == "admin" or (role in EMERGENCY_ROLES and can_emergency)


def may_cancel(*, role: str, status: str, priority: str) -> bool:
    """Approvers and admins cancel anything; editors what is not approved; operators emergencies."""
    if role in ("admin", "approver"):
        return True
    if role == "editor":
        return status in _EDITOR_CANCELS
    if role == "operator":
        return priority == "emergency"
    return False
