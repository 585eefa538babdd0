"""The messages the load bench sends: sealed legacy messages (20 KB letters and HPRIM
reports) and S/MIME-signed trust messages (letters and CR-BIO ``IHE_XDM.ZIP``)."""

from __future__ import annotations

import contextlib
import email.policy
import email.utils
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

from gateway.crypto import smime
from gateway.crypto.legacy import LegacyCrypto
from gateway.crypto.openpgp import OpenPgpCipher
from gateway.crypto.world import USERS, World
from loadkit import ROOT
from loadkit.world import TRUST_PEER

PARAGRAPHS = (
    "Cher confrère, je vous remercie de m'avoir adressé votre patiente pour un bilan "
    "cardiologique. L'électrocardiogramme est en rythme sinusal régulier, sans trouble de "
    "la repolarisation. L'échographie trans-thoracique retrouve un ventricule gauche non "
    "dilaté, de fonction systolique conservée (FEVG estimée à 62 %).",
    "Sur le plan biologique : hémoglobine à 11,8 g/dL, ferritine à 18 µg/L, créatinine à "
    "78 µmol/L (DFG estimé à 84 mL/min/1,73 m²). Le bilan lipidique montre un LDL à "
    "1,42 g/L, au-dessus de l'objectif compte tenu des facteurs de risque.",
    "Je propose d'introduire une statine à dose modérée, de contrôler le bilan hépatique "
    "et les CPK à six semaines, et de poursuivre la supplémentation martiale. Un holter "
    "tensionnel sera réalisé avant la prochaine consultation, prévue dans trois mois.",
    "Traitement à la sortie : bisoprolol 2,5 mg le matin, atorvastatine 20 mg le soir, "
    "fer 80 mg un comprimé par jour pendant trois mois. Régime pauvre en sel, activité "
    "physique adaptée, trente minutes de marche quotidienne.",
)



@dataclass
class Msg:
    msgid: str
    sender: str
    rcpt: str
    data: bytes
    kind: str


def letter_text(i: int, size: int = 20480) -> str:
    """A letter of ``size`` characters that compresses like prose (~3×), not like a loop:
    sentences drawn from the paragraphs' words in a per-letter order."""
    rng = random.Random(i)
    words = " ".join(PARAGRAPHS).split()
    lines = [f"Compte rendu n° {i}", ""]
    total = 0
    while total < size:
        sentence = " ".join(rng.choice(words) for _ in range(rng.randint(8, 14)))
        # capitalised as an author would: "µmol/L" stays so (its upper case is a Greek
        # capital Mu, "Μmol/L", which nobody writes and which the text repair doubts)
        first = sentence[0].upper()
        line = (first if first.isascii() or "À" <= first <= "Þ" else sentence[0]) \
            + sentence[1:] + "."
        lines.append(line)
        total += len(line) + 2
    return "\r\n".join(lines)[:size]


def hprim_texts() -> list[str]:
    return [p.read_bytes().decode("utf-8") for p in sorted((ROOT / "fixtures" / "hprim")
                                                            .glob("*.hpr"))]


def legacy_plain(i: int, phase: str, hprims: list[str],
                 attachments: Sequence[tuple[str, bytes]] = ()) -> tuple[str, str, bytes, str]:
    """(sender key, Message-ID, plaintext MIME message, kind): even = letter, odd = HPRIM."""
    if i % 2 and hprims and not attachments:
        user = next(u for u in USERS if u.key == "biolab")
        body = hprims[(i // 2) % len(hprims)].encode(user.charset, "replace")
        kind = "hprim"
    else:
        user = [u for u in USERS if u.key != "biolab"][(i // 2) % 4]
        body = letter_text(i).encode(user.charset, "replace")
        kind = "letter"
    msgid = f"<bench-{phase}-{i}@{user.legacy_address.split('@')[1]}>"
    m = EmailMessage()
    m["From"] = user.legacy_address
    m["To"] = TRUST_PEER
    m["Subject"] = f"Courrier {phase} {i}"
    m["Date"] = email.utils.format_datetime(datetime.now(UTC))
    m["Message-ID"] = msgid
    m.set_content(body, maintype="text", subtype="plain")
    for name, data in attachments:
        m.add_attachment(data, maintype="application", subtype="octet-stream", filename=name)
    return user.key, msgid, m.as_bytes(), kind


def seal_legacy(world: World, items: Sequence[tuple[str, str, bytes, str]],
                threads: int = 8) -> list[Msg]:
    ciphers = {u.key: LegacyCrypto(OpenPgpCipher(Path(world.gnupg_users[u.key]),
                                                 gateway_fingerprint=world.fingerprints[u.key]))
               for u in USERS}
    addr = {u.key: u.legacy_address for u in USERS}

    def one(item: tuple[str, str, bytes, str]) -> Msg:
        key, msgid, plain, kind = item
        sealed = ciphers[key].seal(plain, recipient=world.fingerprints["gateway"])
        return Msg(msgid, addr[key], TRUST_PEER, sealed, kind)

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, items))


def xdm_packages(world: World, hprims: list[str]) -> list[bytes]:
    """CR-BIO packages (IHE_XDM.ZIP) made from the HPRIM fixtures, as operators send them."""
    from gateway.directory.addresses import AddressBook
    from gateway.documents.codes import load_tables
    from gateway.translate import legacy_to_trust

    book = AddressBook.load(world.addresses)
    sender = book.by_legacy(next(u for u in USERS if u.key == "biolab").legacy_address)
    tables = load_tables(world.root / "mappings")
    out = []
    for n, text in enumerate(hprims):
        with contextlib.suppress(Exception):
            package, _, _, _ = legacy_to_trust._documents(
                text, tables=tables, now=datetime.now(UTC), sender=sender,
                message_id=f"<bench{n}@biolab.legacy.example>")
            if package:
                out.append(package)
    return out


def trust_messages(world: World, n: int, phase: str, identity: smime.SigningIdentity,
                   packages: list[bytes]) -> list[Msg]:
    """S/MIME-signed messages from the simulated operator to mapped legacy users."""
    out = []
    for i in range(n):
        user = USERS[i % len(USERS)]
        msgid = f"<bench-{phase}-{i}@hopital-a.mssante.example>"
        m = EmailMessage(policy=email.policy.SMTP)
        m["From"] = f"Dr X <{TRUST_PEER}>"
        m["To"] = user.trust_address
        m["Subject"] = f"Réponse {phase} {i}"
        m["Date"] = email.utils.format_datetime(datetime.now(UTC))
        m["Message-ID"] = msgid
        if i % 2 and packages:
            m.set_content("Veuillez trouver ci-joint le compte rendu d'examens.\n",
                          cte="quoted-printable")
            m.add_attachment(packages[(i // 2) % len(packages)], maintype="application",
                             subtype="zip", filename="IHE_XDM.ZIP")
            kind = "xdm"
        else:
            m.set_content(letter_text(i, 8192).replace("\r\n", "\n"), cte="quoted-printable")
            kind = "letter"
        out.append(Msg(msgid, TRUST_PEER, user.trust_address,
                       smime.sign(m.as_bytes(), identity), kind))
    return out



def mix(msgs: Sequence[Msg]) -> dict[str, int]:
    out: dict[str, int] = {}
    for m in msgs:
        out[m.kind] = out.get(m.kind, 0) + 1
    return out
