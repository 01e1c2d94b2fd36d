"""A Comprehensive SR document per result, built with highdicom.

Content tree (root: CONTAINER "Diagnostic Imaging Report", LOINC 18748-4),
every item a highdicom content item; the codes and why each was chosen are
listed in docs/DICOM_EXPORT.md:

* HAS OBS CONTEXT: observer = this program as a device (TID 1004, DCM 121007).
* CONTAINS CODE  Result category (99CXRAI RC) = COVID-19 (SCT 840539006) |
  Normal (SCT 17621005) | Other pneumonia (SCT 233604007 "Pneumonia") |
  Indeterminate (SCT 82334004) | Refused (99CXRAI) | Not valid (99CXRAI),
  INFERRED FROM the source IMAGE.
* CONTAINS CODE  Finding (DCM 121071) = COVID-19, Normal or Pneumonia, only for
  a valid verdict, INFERRED FROM the source IMAGE; a Pneumonia finding HAS
  PROPERTIES TEXT Pattern (99CXRAI PATTERN) = "not a COVID-19 pattern".
* CONTAINS NUM   P(COVID) model score (99CXRAI PCOVID, UCUM "1"), decision
  threshold (99CXRAI THRESHOLD, UCUM "1"); TEXT operating point.  Three-class
  models (v2) add NUM P(Normal) (99CXRAI PNORMAL) and P(other pneumonia)
  (99CXRAI PPNEUMONIA), UCUM "1"; binary models' SRs do not have them.
* CONTAINS NUM   Lung involvement (99CXRAI LUNGINV, UCUM "%"), for models with
  a lesion map: the lesion map's area at P >= 0.5 inside the segmented lungs
  / the lung area, with HAS CONCEPT MOD TEXT Measurement Method (SCT
  370129005) saying so.
* CONTAINS TEXT  image suitability (the chest-radiograph gate); NUM share of
  the heatmap inside the lungs (UCUM "%"); TEXT reason (refused); TEXT
  warnings.
* CONTAINS TEXT  Algorithm Name / Version / Parameters (DCM 111001 / 111003 /
  111002: model file SHA-256), software version (99CXRAI).
* CONTAINS IMAGE the source image (DCM 121324 "Source image") and the heatmap
  secondary capture when one was written (99CXRAI HEATMAPSC).
* CONTAINS TEXT  Comment (DCM 121106): "Research use only - not for diagnosis".

``read_sr_values(ds)`` reads those values back (tests, and anyone checking a
file)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pydicom.sr.coding import Code

from training.common.constants import APP_NAME
from training.common.formatting import version_label
from training.dicom_out.uids import DEVICE_UID
from training.inference.result import (
    CATEGORY_COVID,
    CATEGORY_INDETERMINATE,
    CATEGORY_NORMAL,
    CATEGORY_NOT_VALID,
    CATEGORY_PNEUMONIA,
    CATEGORY_REFUSED,
    LESION_LEVEL,
    PNEUMONIA,
)
from training.model.audit import ModelStamp

LOCAL = "99CXRAI"  # private coding scheme of this program ("99" prefix: PS3.16 8.2)
LOCAL_SCHEME_NAME = "Chest X-ray Assistant local codes"
RESEARCH_STATEMENT = "Research use only - not for diagnosis. Output of a research model; not a medical device."
MANUFACTURER = "covid-cxr-assistant research project"
SR_SERIES_DESCRIPTION = "AI result SR (research use only)"

CODE_TITLE = Code("18748-4", "LN", "Diagnostic Imaging Report")
CODE_FINDING = Code("121071", "DCM", "Finding")
CODE_COVID = Code("840539006", "SCT", "COVID-19")  # SNOMED CT synonym of the FSN "Disease caused by SARS-CoV-2"
CODE_NORMAL = Code("17621005", "SCT", "Normal")
CODE_PNEUMONIA = Code("233604007", "SCT", "Pneumonia")  # the v2 "Other pneumonia" verdict (not COVID-19)
CODE_INDETERMINATE = Code("82334004", "SCT", "Indeterminate")
CODE_CATEGORY = Code("RC", LOCAL, "Result category")
CODE_REFUSED = Code("REFUSED", LOCAL, "Refused - not classified")
CODE_NOT_VALID = Code("NOTVALID", LOCAL, "Not valid - refused (image or header check), classified anyway")
CODE_SCORE = Code("PCOVID", LOCAL, "P(COVID) model score")
CODE_THRESHOLD = Code("THRESHOLD", LOCAL, "Decision threshold")
CODE_P_NORMAL = Code("PNORMAL", LOCAL, "P(Normal) model score")
CODE_P_PNEUMONIA = Code("PPNEUMONIA", LOCAL, "P(other pneumonia) model score")
CODE_PATTERN = Code("PATTERN", LOCAL, "Pattern")
CODE_LUNG_INVOLVEMENT = Code("LUNGINV", LOCAL, "Lung involvement")
CODE_MEASUREMENT_METHOD = Code("370129005", "SCT", "Measurement Method")
CODE_OPERATING_POINT = Code("OPPOINT", LOCAL, "Operating point")
CODE_SUITABILITY = Code("SUITABILITY", LOCAL, "Image suitability")
CODE_HEAT_IN_LUNGS = Code("HEATLUNGS", LOCAL, "Heatmap share inside lungs")
CODE_REASON = Code("REASON", LOCAL, "Reason not classified")
CODE_WARNING = Code("WARNING", LOCAL, "Warning")
CODE_CHARSET = Code("CHARSET", LOCAL, "Character set note")  # a header value read by the charset fallback
CODE_APP_VERSION = Code("APPVERSION", LOCAL, "Software version")
CODE_OVERLAY = Code("HEATMAPSC", LOCAL, "Heatmap overlay image")
CODE_ALGORITHM_NAME = Code("111001", "DCM", "Algorithm Name")
CODE_ALGORITHM_VERSION = Code("111003", "DCM", "Algorithm Version")
CODE_ALGORITHM_PARAMETERS = Code("111002", "DCM", "Algorithm Parameters")
CODE_SOURCE_IMAGE = Code("121324", "DCM", "Source image")
CODE_COMMENT = Code("121106", "DCM", "Comment")
UNIT_NONE = Code("1", "UCUM", "no units")
UNIT_PERCENT = Code("%", "UCUM", "Percent")

CATEGORY_CODES = {CATEGORY_COVID: CODE_COVID, CATEGORY_NORMAL: CODE_NORMAL, CATEGORY_PNEUMONIA: CODE_PNEUMONIA,
                  CATEGORY_INDETERMINATE: CODE_INDETERMINATE, CATEGORY_REFUSED: CODE_REFUSED,
                  CATEGORY_NOT_VALID: CODE_NOT_VALID}
SHA_PREFIX = "model file SHA-256="
NOT_COVID_PATTERN = "Other pneumonia: not a COVID-19 pattern"
LUNG_INVOLVEMENT_METHOD = (f"Area of the model's lesion map at P >= {LESION_LEVEL:g} inside the lungs segmented by the "
                           "program's lung segmenter, divided by the lung area (a research model's estimate, not a "
                           "measured extent of disease)")
VERDICT_CATEGORIES = (CATEGORY_COVID, CATEGORY_NORMAL, CATEGORY_PNEUMONIA)  # a Finding item is written for these
_TEXT_LIMIT = 1000  # TEXT items are UT; long warnings stay readable


@dataclass
class SrResult:
    """What an SR says: built from a Prediction (:func:`sr_result`) or read back."""

    category: str
    p_covid: float | None
    threshold: float | None
    operating_point: str
    suitability: str
    heat_in_lungs: float | None
    reason: str
    model_name: str
    model_version: str
    model_sha256: str
    app_version: str
    warnings: list[str] = field(default_factory=list)
    finding: str = ""  # COVID-19 | Normal | Other pneumonia | '' (no verdict)
    p_normal: float | None = None  # three-class models only
    p_pneumonia: float | None = None  # three-class models only
    lung_involvement: float | None = None  # 0..1; models with a lesion map
    pattern: str = ""  # NOT_COVID_PATTERN for an other-pneumonia finding


def operating_point_text(threshold: float | None, operating_points: dict | None, default: float | None) -> str:
    """Which operating point the threshold is: a named one of the model, its default, or user-set."""
    if threshold is None:
        return "none (not classified)"
    for name, value in (operating_points or {}).items():
        if abs(float(value) - threshold) < 1e-9:
            return f"{name} ({threshold:.6g})"
    if default is not None and abs(default - threshold) < 1e-9:
        return f"model default ({threshold:.6g})"
    return f"set by the user ({threshold:.6g})"


def sr_result(pred, stamp: ModelStamp, *, category: str, operating_point: str) -> SrResult:
    verdict = category in VERDICT_CATEGORIES
    probs = dict(getattr(pred, "probs", None) or {})
    three_class = PNEUMONIA in probs  # binary models' probs are {COVID, Normal}: their SR stays as it was

    def prob(name):
        v = probs.get(name) if three_class else None
        return None if v is None else float(v)

    involvement = getattr(pred, "lung_involvement", None)
    return SrResult(
        category=category, p_covid=None if pred.p_covid is None else float(pred.p_covid),
        threshold=None if pred.threshold is None else float(pred.threshold), operating_point=operating_point,
        suitability=pred.suitability or "not checked", heat_in_lungs=pred.heat_in_lungs,
        reason=pred.reason if not pred.ok else "", model_name=stamp.name, model_version=stamp.version,
        model_sha256=stamp.sha256, app_version=stamp.app_version, warnings=list(pred.warnings),
        finding=category if verdict else "", p_normal=prob("Normal"), p_pneumonia=prob(PNEUMONIA),
        lung_involvement=None if involvement is None else float(involvement),
        pattern=NOT_COVID_PATTERN if verdict and category == CATEGORY_PNEUMONIA else "")


def _text(name, value, rel="CONTAINS"):
    from highdicom.sr import TextContentItem

    value = str(value).strip() or "-"
    return TextContentItem(name=name, value=value[:_TEXT_LIMIT], relationship_type=rel)


def _image_ref(name, ds, rel):
    from highdicom.sr import ImageContentItem

    return ImageContentItem(name=name, referenced_sop_class_uid=ds.SOPClassUID,
                            referenced_sop_instance_uid=ds.SOPInstanceUID, relationship_type=rel)


def build_sr(result: SrResult, source, *, series_uid: str, series_number: int, sop_uid: str,
             instance_number: int, overlay=None):
    """The ComprehensiveSR for ``result`` about ``source`` (a clean header from
    ``training.dicom_out.source.source_header``); ``overlay``: the SC dataset it may point to."""
    from highdicom.coding_schemes import CodingSchemeIdentificationItem
    from highdicom.sr import (
        CodeContentItem,
        ComprehensiveSR,
        ContainerContentItem,
        ContentSequence,
        DeviceObserverIdentifyingAttributes,
        NumContentItem,
        ObserverContext,
    )
    from pydicom.sr.codedict import codes

    def inferred_from_source(item):
        item.ContentSequence = ContentSequence([_image_ref(CODE_SOURCE_IMAGE, source, "INFERRED FROM")])
        return item

    items = list(ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=DEVICE_UID, name=APP_NAME, manufacturer_name=MANUFACTURER,
            model_name=version_label(result.model_name, result.model_version)[:64])))
    items.append(inferred_from_source(CodeContentItem(name=CODE_CATEGORY, value=CATEGORY_CODES[result.category],
                                                      relationship_type="CONTAINS")))
    if result.finding:
        finding = inferred_from_source(CodeContentItem(name=CODE_FINDING, value=CATEGORY_CODES[result.finding],
                                                       relationship_type="CONTAINS"))
        if result.pattern:  # "Pneumonia", but not a COVID-19 pattern: said next to the code
            finding.ContentSequence.append(_text(CODE_PATTERN, result.pattern, "HAS PROPERTIES"))
        items.append(finding)
    if result.p_covid is not None:
        items.append(NumContentItem(name=CODE_SCORE, value=result.p_covid, unit=UNIT_NONE,
                                    relationship_type="CONTAINS"))
    for code, value in ((CODE_P_NORMAL, result.p_normal), (CODE_P_PNEUMONIA, result.p_pneumonia)):
        if value is not None:
            items.append(NumContentItem(name=code, value=value, unit=UNIT_NONE, relationship_type="CONTAINS"))
    if result.threshold is not None:
        items.append(NumContentItem(name=CODE_THRESHOLD, value=result.threshold, unit=UNIT_NONE,
                                    relationship_type="CONTAINS"))
    if result.lung_involvement is not None:
        involvement = NumContentItem(name=CODE_LUNG_INVOLVEMENT, value=round(100.0 * result.lung_involvement, 3),
                                     unit=UNIT_PERCENT, relationship_type="CONTAINS")
        involvement.ContentSequence = ContentSequence([_text(CODE_MEASUREMENT_METHOD, LUNG_INVOLVEMENT_METHOD,
                                                             "HAS CONCEPT MOD")])
        items.append(involvement)
    items.append(_text(CODE_OPERATING_POINT, result.operating_point))
    items.append(_text(CODE_SUITABILITY, result.suitability))
    if result.heat_in_lungs is not None:
        items.append(NumContentItem(name=CODE_HEAT_IN_LUNGS, value=round(100.0 * result.heat_in_lungs, 3),
                                    unit=UNIT_PERCENT, relationship_type="CONTAINS"))
    if result.reason:
        items.append(_text(CODE_REASON, result.reason))
    items += [_text(CODE_WARNING, w) for w in result.warnings]
    items += [_text(CODE_CHARSET, n) for n in getattr(source, "charset_notes", ())]  # training.imaging.dicom_charset
    items += [_text(CODE_ALGORITHM_NAME, result.model_name), _text(CODE_ALGORITHM_VERSION, result.model_version),
              _text(CODE_ALGORITHM_PARAMETERS, SHA_PREFIX + result.model_sha256),
              _text(CODE_APP_VERSION, f"{APP_NAME} {result.app_version}")]
    items.append(_image_ref(CODE_SOURCE_IMAGE, source, "CONTAINS"))
    evidence = [source]
    if overlay is not None:
        items.append(_image_ref(CODE_OVERLAY, overlay, "CONTAINS"))
        evidence.append(overlay)
    items.append(_text(CODE_COMMENT, RESEARCH_STATEMENT))

    root = ContainerContentItem(name=CODE_TITLE)
    root.ContentSequence = ContentSequence(items)
    return ComprehensiveSR(
        evidence=evidence, content=root, series_instance_uid=series_uid, series_number=series_number,
        sop_instance_uid=sop_uid, instance_number=instance_number, manufacturer=MANUFACTURER,
        is_complete=True, is_final=False, is_verified=False, series_description=SR_SERIES_DESCRIPTION,
        manufacturer_model_name=APP_NAME, software_versions=result.app_version,
        coding_schemes=[CodingSchemeIdentificationItem(designator=LOCAL, name=LOCAL_SCHEME_NAME,
                                                       responsible_organization=MANUFACTURER)])


# ---------------------------------------------------------------- reading back
def _key(item) -> tuple[str, str]:
    c = item.ConceptNameCodeSequence[0]
    return str(c.CodingSchemeDesignator), str(c.CodeValue)


def _k(code: Code) -> tuple[str, str]:
    return code.scheme_designator, code.value


def read_sr_values(ds) -> SrResult:
    """The values of an SR written by :func:`build_sr` (a pydicom Dataset)."""
    by_code = {_k(c): n for n, c in CATEGORY_CODES.items()}
    values: dict[tuple[str, str], list] = {}
    for item in ds.ContentSequence:
        if "ConceptNameCodeSequence" not in item:
            continue
        vt = item.ValueType
        if vt == "TEXT":
            v = str(item.TextValue)
        elif vt == "NUM":
            v = float(item.MeasuredValueSequence[0].NumericValue)
        elif vt == "CODE":
            cc = item.ConceptCodeSequence[0]
            v = by_code.get((str(cc.CodingSchemeDesignator), str(cc.CodeValue)), str(cc.CodeMeaning))
        else:
            continue
        values.setdefault(_key(item), []).append(v)
        for child in item.get("ContentSequence", []):  # the Pattern of a Finding
            if child.get("ValueType") == "TEXT" and "ConceptNameCodeSequence" in child:
                values.setdefault(("child",) + _key(child), []).append(str(child.TextValue))

    def one(code, default=None):
        return values.get(_k(code), [default])[0]

    share = one(CODE_HEAT_IN_LUNGS)
    involvement = one(CODE_LUNG_INVOLVEMENT)
    params = one(CODE_ALGORITHM_PARAMETERS, "")
    app = one(CODE_APP_VERSION, "")
    return SrResult(
        category=one(CODE_CATEGORY, ""), p_covid=one(CODE_SCORE), threshold=one(CODE_THRESHOLD),
        operating_point=one(CODE_OPERATING_POINT, ""), suitability=one(CODE_SUITABILITY, ""),
        heat_in_lungs=None if share is None else share / 100.0, reason=one(CODE_REASON, ""),
        model_name=one(CODE_ALGORITHM_NAME, ""), model_version=one(CODE_ALGORITHM_VERSION, ""),
        model_sha256=params[len(SHA_PREFIX):] if params.startswith(SHA_PREFIX) else params,
        app_version=app[len(APP_NAME) + 1:] if app.startswith(APP_NAME + " ") else app,
        warnings=values.get(_k(CODE_WARNING), []), finding=one(CODE_FINDING, "") or "",
        p_normal=one(CODE_P_NORMAL), p_pneumonia=one(CODE_P_PNEUMONIA),
        lung_involvement=None if involvement is None else involvement / 100.0,
        pattern=values.get(("child",) + _k(CODE_PATTERN), [""])[0])


__all__ = ["SrResult", "sr_result", "build_sr", "read_sr_values", "operating_point_text", "RESEARCH_STATEMENT",
           "LOCAL", "CATEGORY_CODES", "NOT_COVID_PATTERN", "LUNG_INVOLVEMENT_METHOD"]
