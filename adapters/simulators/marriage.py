"""The civil-affairs marriage registry (民政 婚姻登记), simulated as the SOAP 1.1 WebService
such registries expose: document/literal, one operation, a WSDL at `?wsdl`.

    GET  /ws/hydj?wsdl      the WSDL, its soap:address naming the host the request came to
    POST /ws/hydj           SOAPAction "urn:fj:mz:hydj:v1#queryHydjxx"
                            queryHydjxx(SFZHM, QQLSH?) → return(code, message, records)
    GET  /health

Result codes: 0000 成功 (records of the person, oldest first: 结婚, 离婚, 补发), 1004 无婚姻
登记记录, 1001 参数错误. A request without the right HTTP Basic credentials gets HTTP 401; a
request that is not a SOAP envelope gets a SOAP Fault (HTTP 500). The fault injector of the
HTTP simulators applies (`/_admin/faults`).
"""

from __future__ import annotations

import base64
import hmac
from typing import Any
from xml.sax.saxutils import escape

from aiohttp import web
from lxml import etree  # type: ignore[import-untyped]

from adapters.simulators.faults import FaultInjector, Faults
from adapters.simulators.population import MarriageRegistration, Registers

NAMESPACE = "urn:fj:mz:hydj:v1"
PATH = "/ws/hydj"
OPERATION = "queryHydjxx"
SOAP_ACTION = f"{NAMESPACE}#{OPERATION}"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)

WSDL = """<?xml version="1.0" encoding="UTF-8"?>
<wsdl:definitions name="HydjService" targetNamespace="urn:fj:mz:hydj:v1"
    xmlns:wsdl="http://schemas.xmlsoap.org/wsdl/"
    xmlns:soap="http://schemas.xmlsoap.org/wsdl/soap/"
    xmlns:xs="http://www.w3.org/2001/XMLSchema"
    xmlns:tns="urn:fj:mz:hydj:v1">
  <wsdl:documentation>婚姻登记信息查询服务 (marriage registration)</wsdl:documentation>
  <wsdl:types>
    <xs:schema targetNamespace="urn:fj:mz:hydj:v1" elementFormDefault="unqualified">
      <xs:element name="queryHydjxx">
        <xs:complexType>
          <xs:sequence>
            <xs:element name="SFZHM" type="xs:string"/>
            <xs:element name="QQLSH" type="xs:string" minOccurs="0"/>
          </xs:sequence>
        </xs:complexType>
      </xs:element>
      <xs:element name="queryHydjxxResponse">
        <xs:complexType>
          <xs:sequence>
            <xs:element name="return" type="tns:HydjResult"/>
          </xs:sequence>
        </xs:complexType>
      </xs:element>
      <xs:complexType name="HydjResult">
        <xs:sequence>
          <xs:element name="code" type="xs:string"/>
          <xs:element name="message" type="xs:string"/>
          <xs:element name="records" type="tns:HydjRecords" minOccurs="0"/>
        </xs:sequence>
      </xs:complexType>
      <xs:complexType name="HydjRecords">
        <xs:sequence>
          <xs:element name="record" type="tns:Hydjjl" minOccurs="0" maxOccurs="unbounded"/>
        </xs:sequence>
      </xs:complexType>
      <xs:complexType name="Hydjjl">
        <xs:sequence>
          <xs:element name="NFXM" type="xs:string"/>
          <xs:element name="NFSFZH" type="xs:string"/>
          <xs:element name="NVXM" type="xs:string"/>
          <xs:element name="NVSFZH" type="xs:string"/>
          <xs:element name="YWLX" type="xs:string"/>
          <xs:element name="DJRQ" type="xs:string"/>
          <xs:element name="JHZH" type="xs:string"/>
          <xs:element name="DJJG" type="xs:string"/>
          <xs:element name="GXSJ" type="xs:string"/>
        </xs:sequence>
      </xs:complexType>
    </xs:schema>
  </wsdl:types>
  <wsdl:message name="queryHydjxxRequest">
    <wsdl:part name="parameters" element="tns:queryHydjxx"/>
  </wsdl:message>
  <wsdl:message name="queryHydjxxResponse">
    <wsdl:part name="parameters" element="tns:queryHydjxxResponse"/>
  </wsdl:message>
  <wsdl:portType name="HydjPortType">
    <wsdl:operation name="queryHydjxx">
      <wsdl:input message="tns:queryHydjxxRequest"/>
      <wsdl:output message="tns:queryHydjxxResponse"/>
    </wsdl:operation>
  </wsdl:portType>
  <wsdl:binding name="HydjBinding" type="tns:HydjPortType">
    <soap:binding style="document" transport="http://schemas.xmlsoap.org/soap/http"/>
    <wsdl:operation name="queryHydjxx">
      <soap:operation soapAction="urn:fj:mz:hydj:v1#queryHydjxx" style="document"/>
      <wsdl:input><soap:body use="literal"/></wsdl:input>
      <wsdl:output><soap:body use="literal"/></wsdl:output>
    </wsdl:operation>
  </wsdl:binding>
  <wsdl:service name="HydjService">
    <wsdl:port name="HydjPort" binding="tns:HydjBinding">
      <soap:address location="{address}"/>
    </wsdl:port>
  </wsdl:service>
</wsdl:definitions>
"""


def record_xml(r: MarriageRegistration) -> str:
    fields = {
        "NFXM": r.husband_name,
        "NFSFZH": r.husband_id,
        "NVXM": r.wife_name,
        "NVSFZH": r.wife_id,
        "YWLX": r.kind,
        "DJRQ": f"{r.registered_on:%Y-%m-%d}",
        "JHZH": r.certificate_number,
        "DJJG": r.authority,
        "GXSJ": f"{r.updated_at:%Y-%m-%d %H:%M:%S}",
    }
    return "<record>" + "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields.items()) + "</record>"


def envelope(body: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body>{body}</soap:Body></soap:Envelope>'
    )


def answer(code: str, message: str, records: list[MarriageRegistration] | None) -> str:
    inner = f"<code>{code}</code><message>{escape(message)}</message>"
    if records is not None:
        inner += "<records>" + "".join(record_xml(r) for r in records) + "</records>"
    return envelope(
        f'<ns:{OPERATION}Response xmlns:ns="{NAMESPACE}"><return>{inner}</return>'
        f"</ns:{OPERATION}Response>"
    )


def fault(code: str, text: str) -> str:
    return envelope(
        f"<soap:Fault><faultcode>soap:{code}</faultcode>"
        f"<faultstring>{escape(text)}</faultstring></soap:Fault>"
    )


class MarriageSimulator:
    def __init__(
        self,
        registers: Registers,
        *,
        username: str,
        password: str,
        faults: Faults | None = None,
        seed: int = 0,
    ) -> None:
        self.registers = registers
        self._basic = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.injector = FaultInjector(faults, seed=seed + 3)
        self.requests = 0

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.injector.middleware])
        app.router.add_get(PATH, self._wsdl)
        app.router.add_post(PATH, self._call)
        app.router.add_get("/health", self._health)
        self.injector.add_admin_routes(app)
        return app

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "UP"})

    async def _wsdl(self, request: web.Request) -> web.Response:
        if "wsdl" not in {k.lower() for k in request.query}:
            return web.Response(status=405, text="use POST for SOAP calls, ?wsdl for the WSDL")
        address = f"{request.scheme}://{request.host}{PATH}"
        return web.Response(
            text=WSDL.replace("{address}", escape(address, {'"': "&quot;"})),
            content_type="text/xml",
            charset="utf-8",
        )

    async def _call(self, request: web.Request) -> web.Response:
        self.requests += 1
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), self._basic.encode()):
            return web.Response(
                status=401, text="unauthorised", headers={"WWW-Authenticate": 'Basic realm="mz"'}
            )
        action = request.headers.get("SOAPAction", "").strip('"')
        id_number = _argument(await request.read())
        if action != SOAP_ACTION or id_number is None:
            return _xml(fault("Client", "不是有效的婚姻登记查询请求"), status=500)
        if len(id_number) != 18:
            return _xml(answer("1001", "参数错误：SFZHM", None))
        found = self.registers.marriages.get(id_number.upper())
        if not found:
            return _xml(answer("1004", "无婚姻登记记录", None))
        return _xml(answer("0000", "成功", sorted(found, key=lambda r: r.registered_on)))


def _argument(body: bytes) -> str | None:
    """SFZHM of a queryHydjxx envelope; None for anything else."""
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError:
        return None
    found: Any = root.find(f"{{{SOAP_ENV}}}Body/{{{NAMESPACE}}}{OPERATION}/SFZHM")
    if found is None or not isinstance(found.text, str):
        return None
    return found.text.strip()


def _xml(text: str, *, status: int = 200) -> web.Response:
    return web.Response(text=text, status=status, content_type="text/xml", charset="utf-8")
