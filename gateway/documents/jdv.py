"""The agency's value sets (JDV) the XDM metadata and the CDA header draw their codes from.

Generated from ``fixtures/ans/jeuxDeValeurs/`` (ANS ``ansforge/TestContenuCDA-3-0``, commit
7cd489b3, see fixtures/ans/PROVENANCE.md): J02 healthcareFacilityTypeCode and J04
practiceSettingCode whole, J01 authorSpecialty for the professions of medical biology only.
A lab row of mappings/labs.csv must use codes listed here (ConfigError otherwise).
"""

from __future__ import annotations

Concept = tuple[str, str, str]  # (code, display name, code system)


# healthcareFacilityTypeCode: value set 1.2.250.1.213.1.1.5.466, updated 20241213120000
J02_FACILITY: dict[str, Concept] = {
    "EXP_PATIENT": ("EXP_PATIENT", "Expression personnelle du patient", "1.2.250.1.213.1.1.4.6"),
    "SNR": ("SNR", "Service numérique référencé", "1.2.250.1.213.1.1.4.6"),
    "SA01": ("SA01", "Etablissement public de santé", "1.2.250.1.71.4.2.4"),
    "SA02": ("SA02", "Hôpital militaire du Service de santé des armées", "1.2.250.1.71.4.2.4"),
    "SA03": ("SA03", "Etablissement privé PSPH", "1.2.250.1.71.4.2.4"),
    "SA04": ("SA04", "Etablissement privé non PSPH", "1.2.250.1.71.4.2.4"),
    "SA05": ("SA05", "Centre de santé", "1.2.250.1.71.4.2.4"),
    "SA06": ("SA06", "Autre structure du Service de santé des armées", "1.2.250.1.71.4.2.4"),
    "SA07": ("SA07", "Cabinet individuel", "1.2.250.1.71.4.2.4"),
    "SA08": ("SA08", "Cabinet de groupe", "1.2.250.1.71.4.2.4"),
    "SA09": ("SA09", "Exercice en société", "1.2.250.1.71.4.2.4"),
    "SA10": ("SA10", "Transporteur sanitaire", "1.2.250.1.71.4.2.4"),
    "SA12": ("SA12", "Etablissement de soins et prévention", "1.2.250.1.71.4.2.4"),
    "SA13": ("SA13", "Prévention et soins en entreprise", "1.2.250.1.71.4.2.4"),
    "SA14": (
        "SA14",
        "Etablissements scolaires, universitaires et de formation hors champ FINESS",
        "1.2.250.1.71.4.2.4",
    ),
    "SA15": ("SA15", "PMI et Planification familiale", "1.2.250.1.71.4.2.4"),
    "SA16": ("SA16", "Etablissement pour personnes handicapées", "1.2.250.1.71.4.2.4"),
    "SA17": ("SA17", "Etablissement pour personnes âgées", "1.2.250.1.71.4.2.4"),
    "SA18": ("SA18", "Etablissement aide à la famille", "1.2.250.1.71.4.2.4"),
    "SA19": (
        "SA19",
        "Etablissements FINESS de formation aux professions sanitaires et sociales",
        "1.2.250.1.71.4.2.4",
    ),
    "SA20": ("SA20", "Etablissement pour la protection de l'enfance", "1.2.250.1.71.4.2.4"),
    "SA21": ("SA21", "Etablissement d'hébergement et de réadaptation", "1.2.250.1.71.4.2.4"),
    "SA22": ("SA22", "Recherche", "1.2.250.1.71.4.2.4"),
    "SA23": ("SA23", "Assurance privée", "1.2.250.1.71.4.2.4"),
    "SA24": ("SA24", "Organisme de sécurité sociale", "1.2.250.1.71.4.2.4"),
    "SA25": ("SA25", "Laboratoire de biologie médicale", "1.2.250.1.71.4.2.4"),
    "SA26": ("SA26", "Ministère ou Service déconcentré", "1.2.250.1.71.4.2.4"),
    "SA27": ("SA27", "Collectivité territoriale", "1.2.250.1.71.4.2.4"),
    "SA28": ("SA28", "Association ou organisme humanitaire", "1.2.250.1.71.4.2.4"),
    "SA29": ("SA29", "Laboratoire d'analyses et de biologie médicale", "1.2.250.1.71.4.2.4"),
    "SA30": ("SA30", "Autre établissement sanitaire", "1.2.250.1.71.4.2.4"),
    "SA31": (
        "SA31",
        "Répartition et Distribution de médicaments et dispositifs médicaux",
        "1.2.250.1.71.4.2.4",
    ),
    "SA32": (
        "SA32",
        "Fabrication, Exploitation et Importation de médicaments et dispositifs médicaux",
        "1.2.250.1.71.4.2.4",
    ),
    "SA33": ("SA33", "Pharmacie d'officine", "1.2.250.1.71.4.2.4"),
    "SA34": ("SA34", "Centre de dialyse", "1.2.250.1.71.4.2.4"),
    "SA35": ("SA35", "Para-pharmacie", "1.2.250.1.71.4.2.4"),
    "SA36": ("SA36", "Centre anti-cancer", "1.2.250.1.71.4.2.4"),
    "SA37": ("SA37", "Centre de transfusion sanguine", "1.2.250.1.71.4.2.4"),
    "SA38": ("SA38", "Pharmacie minière", "1.2.250.1.71.4.2.4"),
    "SA39": ("SA39", "Pharmacie mutualiste", "1.2.250.1.71.4.2.4"),
    "SA40": ("SA40", "Secteur privé, praticien hospitalier temps plein", "1.2.250.1.71.4.2.4"),
    "SA41": (
        "SA41",
        "Autre établissement du domaine social ou médico-social",
        "1.2.250.1.71.4.2.4",
    ),
    "SA42": ("SA42", "Appareillage médical", "1.2.250.1.71.4.2.4"),
    "SA43": ("SA43", "Secteur non défini", "1.2.250.1.71.4.2.4"),
    "SA44": ("SA44", "Recrutement ou Gestion RH", "1.2.250.1.71.4.2.4"),
    "SA45": ("SA45", "Communication, Marketing, Consulting, Média", "1.2.250.1.71.4.2.4"),
    "SA46": (
        "SA46",
        "Fabrication, Exploitation, Importation, Répartition, Distribution médicaments et dispositifs médicaux",  # noqa: E501
        "1.2.250.1.71.4.2.4",
    ),
    "SA47": ("SA47", "Incendie et secours", "1.2.250.1.71.4.2.4"),
    "SA48": (
        "SA48",
        "Entreprise industrielle et tertiaire hors industrie pharmaceutique",
        "1.2.250.1.71.4.2.4",
    ),
    "SA49": ("SA49", "Entité Outre-Mer", "1.2.250.1.71.4.2.4"),
    "SA50": ("SA50", "Permanence des soins ambulatoires hors cabinet", "1.2.250.1.71.4.2.4"),
    "SA51": ("SA51", "Structure de coopération avec autorisation de soins", "1.2.250.1.71.4.2.4"),
    "SA52": ("SA52", "Maison de santé ou Pôle de santé", "1.2.250.1.71.4.2.4"),
    "SA53": ("SA53", "Siège administratif d'un établissement de santé", "1.2.250.1.71.4.2.4"),
    "SA54": ("SA54", "Centre de dépistage et de prévention", "1.2.250.1.71.4.2.4"),
    "SA55": (
        "SA55",
        "Laboratoire pharmaceutique préparant et délivrant des allergènes",
        "1.2.250.1.71.4.2.4",
    ),
    "SA56": ("SA56", "Propharmacie", "1.2.250.1.71.4.2.4"),
    "SA57": (
        "SA57",
        "Structure de coopération avec mission de coordination de soins",
        "1.2.250.1.71.4.2.4",
    ),
    "SA58": ("SA58", "Entreprise de taxis", "1.2.250.1.71.4.2.4"),
    "SA59": (
        "SA59",
        "Laboratoire de biologie médicale hors catégorie standard",
        "1.2.250.1.71.4.2.4",
    ),
    "SA60": ("SA60", "Centres médicaux SNCF", "1.2.250.1.71.4.2.4"),
    "SA61": (
        "SA61",
        "Structure Dispensatrice à domicile d'Oxygène à usage médical",
        "1.2.250.1.71.4.2.4",
    ),
    "SA63": (
        "SA63",
        "Communauté professionnelle territoriale de santé et équipe de soins spécialisés",
        "1.2.250.1.71.4.2.4",
    ),
    "SA64": ("SA64", "Société de téléconsultation", "1.2.250.1.71.4.2.4"),
    "SA65": ("SA65", "Antenne de pharmacie", "1.2.250.1.71.4.2.4"),
    "SA66": ("SA66", "Services de Prévention et de Santé au Travail (SPST)", "1.2.250.1.71.4.2.4"),
    "SA67": ("SA67", "Maisons médicales de garde (MMG)", "1.2.250.1.71.4.2.4"),
    "SA68": ("SA68", "Services départementaux d'incendie et de secours", "1.2.250.1.71.4.2.4"),
    "SA69": ("SA69", "Maisons de naissance", "1.2.250.1.71.4.2.4"),
}

# practiceSettingCode: value set 1.2.250.1.213.1.1.5.467, updated 20240927120000
J04_PRACTICE: dict[str, Concept] = {
    "EXP_PATIENT": ("EXP_PATIENT", "Expression personnelle du patient", "1.2.250.1.213.1.1.4.6"),
    "SNR": ("SNR", "Service numérique référencé", "1.2.250.1.213.1.1.4.6"),
    "AMBULATOIRE": ("AMBULATOIRE", "Ambulatoire", "1.2.250.1.213.1.1.4.9"),
    "AMO": ("AMO", "Organisme d'assurance maladie obligatoire", "1.2.250.1.213.1.1.4.9"),
    "DEPISTAGE": ("DEPISTAGE", "Dépistage", "1.2.250.1.213.1.1.4.9"),
    "ESSMS": ("ESSMS", "Etablissement ou Service Social ou Médico-Social", "1.2.250.1.213.1.1.4.9"),
    "ETABLISSEMENT": ("ETABLISSEMENT", "Etablissement de santé", "1.2.250.1.213.1.1.4.9"),
    "HAD": ("HAD", "Hospitalisation à domicile", "1.2.250.1.213.1.1.4.9"),
    "MAD": ("MAD", "Maintien à domicile", "1.2.250.1.213.1.1.4.9"),
    "PALLIATIF": ("PALLIATIF", "Soins palliatifs", "1.2.250.1.213.1.1.4.9"),
    "SAD": ("SAD", "Soins à domicile", "1.2.250.1.213.1.1.4.9"),
    "SAMU_SMUR": ("SAMU_SMUR", "SAMU/SMUR", "1.2.250.1.213.1.1.4.9"),
}

# authorSpecialty (biology): value set 1.2.250.1.213.1.1.5.461, updated 20241213120000
J01_SPECIALTY: dict[str, Concept] = {
    "G15_10/SM03": ("G15_10/SM03", "Médecin - Biologie médicale (SM)", "1.2.250.1.213.1.1.4.5"),
    "G15_10/SM63": (
        "G15_10/SM63",
        "Médecin - Biologie médicale option biologie générale (SM)",
        "1.2.250.1.213.1.1.4.5",
    ),
    "G15_10/SM64": (
        "G15_10/SM64",
        "Médecin - Biologie médicale option médecine moléculaire, génétique et pharmacologie (SM)",
        "1.2.250.1.213.1.1.4.5",
    ),
    "G15_10/SM65": (
        "G15_10/SM65",
        "Médecin - Biologie médicale option hématologie et immunologie (SM)",
        "1.2.250.1.213.1.1.4.5",
    ),
    "G15_10/SM66": (
        "G15_10/SM66",
        "Médecin - Biologie médicale option agents infectieux (SM)",
        "1.2.250.1.213.1.1.4.5",
    ),
    "G15_10/SM67": (
        "G15_10/SM67",
        "Médecin - Biologie médicale option biologie de la reproduction (SM)",
        "1.2.250.1.213.1.1.4.5",
    ),
    "G15_10/C20": ("G15_10/C20", "Médecin - Hémobiologie (C)", "1.2.250.1.213.1.1.4.5"),
    "G15_10/CAPA10": (
        "G15_10/CAPA10",
        "Médecin - Médecine et biologie du sport (CAPA)",
        "1.2.250.1.213.1.1.4.5",
    ),
    "G15_10/DSM204": (
        "G15_10/DSM204",
        "Médecin - Biologie des agents infectieux (DNQ)",
        "1.2.250.1.213.1.1.4.5",
    ),
    "G15_10/DSM205": (
        "G15_10/DSM205",
        "Médecin - Biologie moléculaire (DNQ)",
        "1.2.250.1.213.1.1.4.5",
    ),
    "G15_10/DSM214": (
        "G15_10/DSM214",
        "Médecin - Hématologie biologique (DNQ)",
        "1.2.250.1.213.1.1.4.5",
    ),
    "G15_10/DSM216": (
        "G15_10/DSM216",
        "Médecin - Hémobiologie-transfusion (DNQ)",
        "1.2.250.1.213.1.1.4.5",
    ),
    "G15_10/DSM232": (
        "G15_10/DSM232",
        "Médecin - Radiopharmacie et radiobiologie (DNQ)",
        "1.2.250.1.213.1.1.4.5",
    ),
    "G15_10/DSM234": (
        "G15_10/DSM234",
        "Médecin - Toxicologie biologique (DNQ)",
        "1.2.250.1.213.1.1.4.5",
    ),
    "G15_10/DSM239": (
        "G15_10/DSM239",
        "Médecin - Cancérologie, opt Biologie cancérologie (DNQ)",
        "1.2.250.1.213.1.1.4.5",
    ),
    "G15_21/EG": ("G15_21/EG", "Pharmacien biologiste - OM", "1.2.250.1.213.1.1.4.5"),
    "G15_21/G": ("G15_21/G", "Pharmacien biologiste", "1.2.250.1.213.1.1.4.5"),
    "G15_86": ("G15_86", "Technicien de laboratoire médical", "1.2.250.1.213.1.1.4.5"),
    "G15_10/DEC07": (
        "G15_10/DEC07",
        "Médecin - Cancérologie option biologie en cancérologie (DEC)",
        "1.2.250.1.213.1.1.4.5",
    ),
    "G15_10/DEC11": (
        "G15_10/DEC11",
        "Médecin - Hémobiologie - tranfusion (DEC)",
        "1.2.250.1.213.1.1.4.5",
    ),
    "G15_10/DEC22": (
        "G15_10/DEC22",
        "Médecin - Pathologie infectieuse et tropicale, clinique et biologique (DEC)",
        "1.2.250.1.213.1.1.4.5",
    ),
    "G15_10/SST20": (
        "G15_10/SST20",
        "Médecin - Médecine et biologie de la reproduction-andrologie (SST)",
        "1.2.250.1.213.1.1.4.5",
    ),
    "334": ("334", "Biologiste médical ni médecin ni pharmacien", "1.2.250.1.213.1.6.1.107"),
    "369": ("369", "Biologiste médical non-médecin", "1.2.250.1.213.1.6.1.107"),
}
