"""The console's words in French and English (``?lang=`` first, then ``Accept-Language``)."""

from __future__ import annotations

LANGS = ("fr", "en")

_T: dict[str, tuple[str, str]] = {
    # key: (fr, en)
    "title": ("Console passerelle", "passerelle console"),
    "messages": ("Messages", "Messages"),
    "queue": ("File d'attente", "Queue"),
    "quarantine": ("Quarantaine", "Quarantine"),
    "domains": ("Liste des domaines", "List of domains"),
    "directory": ("Annuaire", "Directory"),
    "search": ("Rechercher", "Search"),
    "message_id": ("Message-ID", "Message-ID"),
    "sender": ("Expéditeur", "Sender"),
    "field_message_id": ("Message-ID", "Message-ID"),
    "field_sender": ("Expéditeur (adresse ou domaine)", "Sender (address or domain)"),
    "field_recipient": ("Destinataire (adresse ou domaine)", "Recipient (address or domain)"),
    "field_domain": ("Domaine (d'un côté ou de l'autre)", "Domain (either side)"),
    "recipient": ("Destinataire", "Recipient"),
    "domain": ("Domaine", "Domain"),
    "state": ("État", "State"),
    "any": ("tous", "any"),
    "since": ("Depuis (AAAA-MM-JJ)", "Since (YYYY-MM-DD)"),
    "until": ("Jusqu'au (AAAA-MM-JJ)", "Until (YYYY-MM-DD)"),
    "results": ("{n} message(s)", "{n} message(s)"),
    "none": ("Aucun message.", "No message."),
    "queue_id": ("N° de file", "Queue id"),
    "direction": ("Sens", "Direction"),
    "received": ("Reçu", "Received"),
    "size": ("Taille", "Size"),
    "digest": ("Empreinte", "Digest"),
    "sender_domain": ("Domaine expéditeur", "Sender's domain"),
    "recipients": ("Destinataires", "Recipients"),
    "attempts": ("Tentatives", "Attempts"),
    "reason": ("Dernière réponse", "Last reply"),
    "why": ("Motif", "Reason"),
    "next_attempt": ("Prochaine tentative", "Next attempt"),
    "previous": ("Précédents", "Previous"),
    "next": ("Suivants", "Next"),
    "page": ("Page {p} sur {n}", "Page {p} of {n}"),
    "timeline": ("Chronologie", "Timeline"),
    "delivery_attempts": ("Tentatives de remise", "Delivery attempts"),
    "attempt": ("N°", "No."),
    "relay": ("Relais", "Relay"),
    "dsn": ("Code DSN", "DSN code"),
    "reply": ("Réponse du pair", "Peer's reply"),
    "no_trace": ("Aucune étape enregistrée dans le journal.", "No step recorded in the journal."),
    "when": ("Quand", "When"),
    "step": ("Étape", "Step"),
    "details": ("Détails", "Details"),
    "reveal": ("Afficher le contenu", "Reveal the content"),
    "reveal_warn": ("L'affichage du contenu (qui peut contenir des données de santé) est "
                    "enregistré dans le journal à votre nom.",
                    "Showing the content (which may hold health data) is recorded in the "
                    "journal under your name."),
    "content": ("En-têtes du message stocké", "Stored message's header block"),
    "release": ("Libérer", "Release"),
    "drop": ("Supprimer", "Drop"),
    "confirm": ("Confirmer", "Confirm"),
    "cancel": ("Annuler", "Cancel"),
    "confirm_release": ("Libérer le message {id} ? Il sera traduit à nouveau et remis.",
                        "Release message {id}? It will be translated again and delivered."),
    "confirm_drop": ("Supprimer définitivement le message {id} ?",
                     "Drop message {id} for good?"),
    "released": ("Message {id} libéré ({n} destinataire(s)).",
                 "Message {id} released ({n} recipient(s))."),
    "dropped": ("Message {id} supprimé.", "Message {id} dropped."),
    "action_failed": ("Action impossible : {why}", "Not done: {why}"),
    "count": ("Nombre", "Count"),
    "oldest": ("Plus ancien en attente : {h} h", "Oldest waiting: {h} h"),
    "by_domain": ("En attente par domaine de destination et par âge",
                  "Waiting, by destination domain and age"),
    "shape_caption": ("Destinataires non encore remis (comme passerelle queue summary)",
                      "Recipients not yet delivered (as passerelle queue summary)"),
    "nothing_waiting": ("Rien n'attend.", "Nothing is waiting."),
    "total": ("Total", "Total"),
    "all_domains": ("Tous", "All"),
    "pages": ("Pages de résultats", "Result pages"),
    "first_of": ("Les {n} plus anciens sur {total}.", "The oldest {n} of {total}."),
    "see_all": ("Tous, page par page", "All of them, page by page"),
    "actions": ("Actions", "Actions"),
    "to_trust": ("vers MSSanté", "to MSSanté"),
    "to_legacy": ("vers la messagerie historique", "to the legacy network"),
    "generated": ("Générée le", "Generated at"),
    "age": ("Âge", "Age"),
    "signer": ("Signataire", "Signer"),
    "unsigned": ("non signée", "unsigned"),
    "listed": ("Domaines listés", "Domains listed"),
    "lookup": ("Adresse, RPPS ou nom de famille (et prénom)",
               "Address, RPPS or family name (and given name)"),
    "no_list": ("Aucune liste des domaines en vigueur.", "No list of domains in force."),
    "domain_rows": ("Domaines et opérateurs", "Domains and operators"),
    "ascii_name": ("Forme ASCII", "ASCII form"),
    "operator_dn": ("DN du certificat de l'opérateur", "Operator's certificate DN"),
    "dir_none": ("Aucune entrée.", "No entry."),
    "dir_missing": ("aucun annuaire importé (passerelle directory import)",
                    "no directory imported (passerelle directory import)"),
    "dir_unavailable": ("Annuaire indisponible : {why}", "Directory unavailable: {why}"),
    "type": ("Type", "Type"),
    "name": ("Nom", "Name"),
    "address": ("Adresse", "Address"),
    "login": ("Connexion", "Sign in"),
    "token": ("Jeton d'opérateur", "Operator token"),
    "login_failed": ("Jeton inconnu.", "Unknown token."),
    "signed_as": ("Opérateur : {name}", "Operator: {name}"),
    "logout": ("Déconnexion", "Sign out"),
    "forbidden": ("Requête refusée (jeton CSRF invalide).",
                  "Request refused (bad CSRF token)."),
    "not_found": ("Introuvable.", "Not found."),
    "hours": ("{h} h", "{h} h"),
    "bad_date": ("Date invalide : {v}", "Bad date: {v}"),
    "lang_other": ("English", "Français"),
}


_STATES: dict[str, tuple[str, str]] = {
    # a recipient's state, or a delivery attempt's result: (fr, en)
    "received": ("reçu", "received"),
    "translated": ("traduit", "translated"),
    "delivered": ("remis", "delivered"),
    "deferred": ("différé", "deferred"),
    "bounced": ("rejeté", "bounced"),
    "quarantined": ("en quarantaine", "quarantined"),
    "held": ("suspendu", "held"),
    "sent": ("remis", "sent"),
}


def state(lang: str, code: str) -> str:
    """A state in ``lang`` (an unknown code as it is)."""
    fr, en = _STATES.get(code, (code, code))
    return fr if lang == "fr" else en


def pick(query: str | None, accept: str | None) -> str:
    if query in LANGS:
        return str(query)
    best, weight = "en", -1.0
    for item in (accept or "").split(","):
        tag, _, params = item.strip().partition(";")
        lang = tag.strip().lower()[:2]
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        if lang in LANGS and q > weight:
            best, weight = lang, q
    return best


def text(lang: str, key: str, **values: object) -> str:
    fr, en = _T[key]
    template = fr if lang == "fr" else en
    return template.format(**values) if values else template
