"""CAP 1.2 documents the tests read: a Vietnamese typhoon alert, its Cancel, an OASIS example."""

from __future__ import annotations

# Typhoon No. 3 nearing Quảng Ninh and Hải Phòng: an emergency for the coast, heavy rain
# (priority) inland; both infos in Vietnamese, as the national forecasting centre would send.
TYPHOON = """<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>NCHMF-2026-09-06-BAO3-001</identifier>
  <sender>canhbao@nchmf.gov.vn</sender>
  <sent>2026-09-06T10:00:00+07:00</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>vi-VN</language>
    <category>Met</category>
    <category>Safety</category>
    <event>Bão số 3</event>
    <responseType>Shelter</responseType>
    <responseType>Evacuate</responseType>
    <urgency>Immediate</urgency>
    <severity>Extreme</severity>
    <certainty>Observed</certainty>
    <effective>2026-09-06T10:00:00+07:00</effective>
    <onset>2026-09-06T16:00:00+07:00</onset>
    <expires>2026-09-07T22:00:00+07:00</expires>
    <senderName>Trung tâm Dự báo khí tượng thủy văn quốc gia</senderName>
    <headline>Bão số 3 (YAGI) đổ bộ vùng biển Quảng Ninh – Hải Phòng</headline>
    <description>Hồi 10 giờ ngày 06/9, vị trí tâm bão ở khoảng 20,6 độ Vĩ Bắc;
      108,3 độ Kinh Đông. Sức gió mạnh nhất vùng gần tâm bão mạnh cấp 14
      (150-166 km/h), giật trên cấp 17.</description>
    <instruction>Người dân vùng ven biển khẩn trương sơ tán đến nơi trú ẩn an toàn;
      tàu thuyền không ra khơi; chằng chống nhà cửa.</instruction>
    <web>https://nchmf.gov.vn/canh-bao/bao-so-3</web>
    <resource>
      <resourceDesc>Bản tin đọc cảnh báo bão</resourceDesc>
      <mimeType>audio/mpeg</mimeType>
      <size>482113</size>
      <uri>https://nchmf.gov.vn/cap/audio/bao-so-3-001.mp3</uri>
      <digest>6f1ed002ab5595859014ebf0951522d9c4e1b0cf</digest>
    </resource>
    <area>
      <areaDesc>Vùng ven biển tỉnh Quảng Ninh và thành phố Hải Phòng</areaDesc>
      <polygon>21.55,107.35 21.10,108.05 20.70,107.40
        20.85,106.65 21.20,106.70 21.55,107.35</polygon>
      <circle>20.6,108.3 120</circle>
      <geocode>
        <valueName>MA_DVHC</valueName>
        <value>22</value>
      </geocode>
      <geocode>
        <valueName>MA_DVHC</valueName>
        <value>31</value>
      </geocode>
    </area>
  </info>
  <info>
    <language>vi-VN</language>
    <category>Met</category>
    <event>Mưa lớn diện rộng</event>
    <urgency>Expected</urgency>
    <severity>Severe</severity>
    <certainty>Likely</certainty>
    <expires>2026-09-08T18:00:00+07:00</expires>
    <headline>Mưa rất to ở các tỉnh Lạng Sơn, Cao Bằng</headline>
    <description>Từ đêm 06/9 đến 08/9 có mưa to đến rất to,
      lượng mưa phổ biến 150-250 mm.</description>
    <instruction>Đề phòng lũ quét và sạt lở đất ở vùng núi</instruction>
    <area>
      <areaDesc>Tỉnh Lạng Sơn và tỉnh Cao Bằng</areaDesc>
      <geocode>
        <valueName>MA_DVHC</valueName>
        <value>20</value>
      </geocode>
      <geocode>
        <valueName>MA_DVHC</valueName>
        <value>04</value>
      </geocode>
    </area>
  </info>
</alert>
"""

TYPHOON_CANCEL = """<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>NCHMF-2026-09-07-BAO3-009</identifier>
  <sender>canhbao@nchmf.gov.vn</sender>
  <sent>2026-09-07T08:30:00+07:00</sent>
  <status>Actual</status>
  <msgType>Cancel</msgType>
  <scope>Public</scope>
  <note>Bão số 3 đã suy yếu thành áp thấp nhiệt đới.</note>
  <references>canhbao@nchmf.gov.vn,NCHMF-2026-09-06-BAO3-001,2026-09-06T10:00:00+07:00</references>
</alert>
"""

# OASIS CAP 1.2 specification, appendix A.2 (shortened), with its spaced XML declaration.
THUNDERSTORM = """<?xml version = "1.0" encoding = "UTF-8"?>
<alert xmlns = "urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>KSTO1055887203</identifier>
  <sender>KSTO@NWS.NOAA.GOV</sender>
  <sent>2003-06-17T14:57:00-07:00</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <category>Met</category>
    <event>SEVERE THUNDERSTORM</event>
    <responseType>Shelter</responseType>
    <urgency>Immediate</urgency>
    <severity>Severe</severity>
    <certainty>Observed</certainty>
    <eventCode>
      <valueName>SAME</valueName>
      <value>SVR</value>
    </eventCode>
    <expires>2003-06-17T16:00:00-07:00</expires>
    <senderName>NATIONAL WEATHER SERVICE SACRAMENTO CA</senderName>
    <headline>SEVERE THUNDERSTORM WARNING</headline>
    <description> AT 254 PM PDT...NATIONAL WEATHER SERVICE DOPPLER RADAR INDICATED A SEVERE
      THUNDERSTORM OVER SOUTH CENTRAL ALPINE COUNTY...OR ABOUT 18 MILES SOUTHEAST OF
      KIRKWOOD...MOVING SOUTHWEST AT 5 MPH.</description>
    <instruction>TAKE COVER IN A SUBSTANTIAL SHELTER UNTIL THE STORM PASSES.</instruction>
    <contact>BARUFFALDI/JUSKIE</contact>
    <area>
      <areaDesc>EXTREME NORTH CENTRAL TUOLUMNE COUNTY IN CALIFORNIA, EXTREME NORTHEASTERN
        CALAVERAS COUNTY IN CALIFORNIA, SOUTHWESTERN ALPINE COUNTY IN CALIFORNIA</areaDesc>
      <polygon>38.47,-120.14 38.34,-119.95 38.52,-119.74 38.62,-119.89 38.47,-120.14</polygon>
      <geocode>
        <valueName>SAME</valueName>
        <value>006109</value>
      </geocode>
      <geocode>
        <valueName>SAME</valueName>
        <value>006009</value>
      </geocode>
    </area>
  </info>
</alert>
"""


def edited(document: str, old: str, new: str) -> bytes:
    """The document with `old` (which must occur) replaced by `new`, as UTF-8 bytes."""
    assert old in document, old
    return document.replace(old, new).encode()
