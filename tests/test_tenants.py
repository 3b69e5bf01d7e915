"""Clinics, groups, staff users, facilities and providers."""

from __future__ import annotations

import pyotp
import pytest

from chalicelib.core.errors import AlreadyExists, InvalidInput, NotFound, UnknownClinic
from chalicelib.store import keys
from chalicelib.store.db import clinic_scope
from chalicelib.store.models import StaffUserItem
from chalicelib.tenants import selectors, services
from chalicelib.tenants.groups import contrast_ratio, settings_parse
from tests import factories


def test_contrast_ratio_matches_wcag_reference_values():
    assert round(contrast_ratio("#000000", "#ffffff"), 1) == 21.0
    assert round(contrast_ratio("#777777", "#ffffff"), 2) == 4.48


def test_group_settings_refuse_unknown_keys_bad_values_and_poor_contrast():
    with pytest.raises(InvalidInput, match="unknown settings"):
        settings_parse({"show_everything": True})
    with pytest.raises(InvalidInput, match="landing_page"):
        settings_parse({"landing_page": "nowhere"})
    with pytest.raises(InvalidInput, match="contrast"):
        settings_parse({"theme": {"primary": "#cccccc"}})
    with pytest.raises(InvalidInput, match="minimum_payment_cents"):
        settings_parse({"minimum_payment_cents": 0})
    assert settings_parse({}).minimum_payment_cents == 100


@pytest.mark.usefixtures("dynamodb_endpoint")
def test_groups_are_stored_and_read_back_per_clinic():
    cid = factories.clinic()
    gid = services.group_create(clinic_id=cid, name="Main", settings={"include_new_charges": True,
                                                                      "link_lifetimes": {"office_qr": 10}})
    group = selectors.group_get(clinic_id=cid, group_id=gid)
    assert group.settings.include_new_charges is True
    assert group.settings.link_lifetimes.office_qr == 10
    services.group_update(clinic_id=cid, group_id=gid, settings={"landing_page": "pay"})
    assert selectors.groups_list(clinic_id=cid)[0].settings.landing_page == "pay"
    other = factories.clinic()
    with pytest.raises(NotFound):
        selectors.group_get(clinic_id=other, group_id=gid)


@pytest.mark.usefixtures("dynamodb_endpoint")
def test_staff_user_password_is_argon2id_and_login_needs_totp():
    cid = factories.clinic()
    enrolled = services.staff_user_create(clinic_id=cid, email="Billing@Example.com", name="B",
                                          password="correct horse battery", roles=["billing"])
    with clinic_scope(cid):
        user = StaffUserItem.get(keys.clinic_pk(cid), keys.user_sk(enrolled.user_id))
    assert user.password_hash.startswith("$argon2id$")
    assert "correct horse" not in user.serialize().__repr__()
    code = pyotp.TOTP(user.totp_secret).now()
    assert services.staff_login_check(clinic_id=cid, email="billing@example.com",
                                      password="correct horse battery", totp_code=code) == enrolled.user_id
    for email, password, totp in [("billing@example.com", "wrong password!!", code),
                                  ("billing@example.com", "correct horse battery", "000000"),
                                  ("nobody@example.com", "correct horse battery", code)]:
        with pytest.raises(NotFound, match="email, password or code"):
            services.staff_login_check(clinic_id=cid, email=email, password=password, totp_code=totp)
    with pytest.raises(AlreadyExists):
        services.staff_user_create(clinic_id=cid, email="billing@example.com", name="C",
                                   password="another long password", roles=["admin"])
    with pytest.raises(InvalidInput):
        services.staff_user_create(clinic_id=cid, email="x@example.com", name="C", password="short", roles=["admin"])
    with pytest.raises(NotFound):  # the same user from another clinic does not exist
        services.staff_login_check(clinic_id=factories.clinic(), email="billing@example.com",
                                   password="correct horse battery", totp_code=code)


@pytest.mark.usefixtures("dynamodb_endpoint")
def test_facilities_and_providers():
    cid = factories.clinic()
    fid = services.facility_create(clinic_id=cid, name="North Clinic", nickname="North", tax_id="12-3456789")
    pid = services.provider_create(clinic_id=cid, first_name="A", last_name="B", npi="1234567893",
                                   roles=["billing", "rendering"])
    assert selectors.facility_names(clinic_id=cid) == {fid: "North"}
    assert selectors.provider_names(clinic_id=cid) == {pid: "A B"}
    with pytest.raises(InvalidInput, match="NPI"):
        services.provider_create(clinic_id=cid, last_name="B", npi="123")
    with pytest.raises(UnknownClinic):
        services.facility_create(clinic_id="c_nope", name="X")
    with pytest.raises(InvalidInput, match="time zone"):
        services.clinic_create(name="X", time_zone="Mars/Olympus")
