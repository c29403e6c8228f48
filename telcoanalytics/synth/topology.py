"""Synthetic topology: regions, radio sites with sectors, and the transport/core behind them.

Used by :func:`telcoanalytics.synth.network.generate`; see that module for the whole generator.

The network has ``n_regions`` regions. Each region holds radio sites clustered around a
regional centre (an urban core with a tight spread and a rural hinterland with a wide one), one
aggregation switch per ~25 radio sites (each on its own hub site), and one core site with two
core routers and a packet gateway. Macro sites carry up to three sector cells, small-cell sites
one cell. Traffic flows cell -> aggregation switch -> core router -> packet gateway.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from telcoanalytics.records import EQUIPMENT_CLASS_CODE, TECHNOLOGIES, TOPOLOGY_DTYPE, VENDORS

MACRO = EQUIPMENT_CLASS_CODE["macro_cell"]
SMALL = EQUIPMENT_CLASS_CODE["small_cell"]
CORE = EQUIPMENT_CLASS_CODE["core_router"]
SWITCH = EQUIPMENT_CLASS_CODE["aggregation_switch"]
PGW = EQUIPMENT_CLASS_CODE["packet_gateway"]
TECH = {name: i for i, name in enumerate(TECHNOLOGIES)}

SITES_PER_SWITCH = 25
# Element ids are region_id * ID_STRIDE + a local counter; site ids likewise (own namespace).
ID_STRIDE = 10_000_000
MIN_ELEMENTS_PER_REGION = 8


@dataclass
class SynthTopology:
    """The generated topology plus the dense helper arrays the source generators need.

    Attributes
    ----------
    table : TOPOLOGY_DTYPE array, one row per element, ordered by region, then site.
    region : int64 (n,)  dense region index of each element.
    site : int64 (n,)  dense site index of each element.
    urban : bool (n,)  element sits in its region's urban core.
    uplink : int64 (n,)  dense index of the element's upstream element (cell -> switch ->
        core router -> packet gateway), -1 for packet gateways.
    region_ids, site_ids : int64  external ids of the dense regions / sites.
    """

    table: np.ndarray
    region: np.ndarray
    site: np.ndarray
    urban: np.ndarray
    uplink: np.ndarray
    region_ids: np.ndarray
    site_ids: np.ndarray

    @property
    def n(self) -> int:
        return len(self.table)

    @property
    def is_cell(self) -> np.ndarray:
        c = self.table["equipment_class"]
        return (c == MACRO) | (c == SMALL)


def build_topology(n_elements: int, n_regions: int, cells_per_site: int, rng: np.random.Generator) -> SynthTopology:
    """Generate a topology of exactly ``n_elements`` elements in ``n_regions`` regions.

    Parameters
    ----------
    n_elements : int
        Total number of elements (cells, switches, core routers, packet gateways).
    n_regions : int
        Number of regions (>= 1); every region gets at least ``MIN_ELEMENTS_PER_REGION`` elements.
    cells_per_site : int
        Sectors of a macro site (>= 1); small-cell sites carry one cell.
    rng : numpy.random.Generator

    Returns
    -------
    SynthTopology

    Raises
    ------
    ValueError
        If ``n_elements`` is too small for ``n_regions`` or an argument is out of range.
    """
    if n_regions < 1:
        raise ValueError(f"n_regions must be >= 1, got {n_regions}")
    if cells_per_site < 1:
        raise ValueError(f"cells_per_site must be >= 1, got {cells_per_site}")
    if n_elements < MIN_ELEMENTS_PER_REGION * n_regions:
        raise ValueError(
            f"n_elements={n_elements} is too small for n_regions={n_regions}; "
            f"use n_elements >= {MIN_ELEMENTS_PER_REGION * n_regions} or fewer regions"
        )
    # Region sizes: uneven populations, each region >= the minimum.
    w = rng.lognormal(0.0, 0.45, n_regions)
    spare = n_elements - MIN_ELEMENTS_PER_REGION * n_regions
    per_region = MIN_ELEMENTS_PER_REGION + np.floor(spare * w / w.sum()).astype(np.int64)
    per_region[: n_elements - per_region.sum()] += 1
    # Regional centres spread over a ~1000 km box; vendors are regional (swap programmes).
    centre_lat = rng.uniform(44.0, 54.0, n_regions)
    centre_lon = rng.uniform(-1.0, 15.0, n_regions)
    radio_vendor = rng.integers(0, len(VENDORS), n_regions)

    rows, region_l, site_l, urban_l, uplink_l, site_ids = [], [], [], [], [], []
    offset = 0
    site_offset = 0
    for r in range(n_regions):
        region_id = r + 1
        n_r = int(per_region[r])
        avg_cells = 0.8 * cells_per_site + 0.2
        n_switch = max(1, int(round((n_r - 3) / (SITES_PER_SWITCH * avg_cells + 1))))
        n_cells = n_r - 3 - n_switch
        # Radio sites: 80% macro (cells_per_site sectors), 20% small cell (one cell).
        sizes = np.where(rng.random(n_cells) < 0.8, cells_per_site, 1)
        cut = int(np.searchsorted(np.cumsum(sizes), n_cells))
        sizes = sizes[: cut + 1].copy()
        sizes[-1] -= int(sizes.sum() - n_cells)
        n_sites = len(sizes)
        urban_site = rng.random(n_sites) < 0.55
        spread = np.where(urban_site, 0.04, 0.45)  # degrees (~4 km vs ~45 km)
        s_lat = centre_lat[r] + rng.normal(0.0, 1.0, n_sites) * spread
        s_lon = centre_lon[r] + rng.normal(0.0, 1.0, n_sites) * spread * 1.5
        # Switches aggregate geographic strips of sites (sorted by longitude).
        by_lon = np.argsort(s_lon, kind="stable")
        sw_of_site = np.empty(n_sites, dtype=np.int64)
        sw_of_site[by_lon] = np.minimum(np.arange(n_sites) * n_switch // max(n_sites, 1), n_switch - 1)
        cell_site = np.repeat(np.arange(n_sites), sizes)
        cls = np.where(np.repeat(sizes, sizes) == 1, SMALL, MACRO).astype(np.int16)
        tech_p = np.array([0.05, 0.10, 0.60, 0.25, 0.0])
        tech = rng.choice(len(TECHNOLOGIES), size=n_cells, p=tech_p).astype(np.int16)
        tech[cls == SMALL] = np.where(rng.random(int((cls == SMALL).sum())) < 0.5, TECH["4g"], TECH["5g"])
        vend = np.where(rng.random(n_cells) < 0.85, radio_vendor[r], rng.integers(0, len(VENDORS), n_cells))
        # Element order inside the region: cells (by site), then switches, then the core site.
        local_sites = n_sites + n_switch + 1
        sid = region_id * ID_STRIDE + np.arange(local_sites, dtype=np.int64) + 1
        site_ids.append(sid)
        sw_lat = centre_lat[r] + rng.normal(0.0, 0.15, n_switch)
        sw_lon = centre_lon[r] + rng.normal(0.0, 0.2, n_switch)
        core_lat, core_lon = centre_lat[r] + rng.normal(0, 0.01), centre_lon[r] + rng.normal(0, 0.01)
        t = np.zeros(n_r, dtype=TOPOLOGY_DTYPE)
        t["element_id"] = region_id * ID_STRIDE + np.arange(n_r, dtype=np.int64) + 1
        t["region_id"] = region_id
        site_local = np.concatenate([cell_site, n_sites + np.arange(n_switch), [n_sites + n_switch] * 3])
        t["site_id"] = sid[site_local]
        t["equipment_class"] = np.concatenate([cls, np.full(n_switch, SWITCH), [CORE, CORE, PGW]])
        t["vendor"] = np.concatenate([vend, rng.integers(0, len(VENDORS), n_switch), rng.integers(0, len(VENDORS), 3)])
        t["technology"] = np.concatenate([tech, np.full(n_switch + 3, TECH["ip"])])
        # Sector antennas share their site's coordinates.
        t["lat"] = np.concatenate([s_lat[cell_site], sw_lat, [core_lat] * 3])
        t["lon"] = np.concatenate([s_lon[cell_site], sw_lon, [core_lon] * 3])
        rows.append(t)
        region_l.append(np.full(n_r, r, dtype=np.int64))
        site_l.append(site_offset + site_local)
        urban_l.append(np.concatenate([urban_site[cell_site], np.ones(n_switch + 3, bool)]))
        first_sw = offset + n_cells
        core0 = first_sw + n_switch
        up = np.empty(n_r, dtype=np.int64)
        up[:n_cells] = first_sw + sw_of_site[cell_site]
        up[n_cells : n_cells + n_switch] = core0 + (np.arange(n_switch) % 2)
        up[n_cells + n_switch : n_cells + n_switch + 2] = core0 + 2
        up[-1] = -1
        uplink_l.append(up)
        offset += n_r
        site_offset += local_sites
    return SynthTopology(
        table=np.concatenate(rows),
        region=np.concatenate(region_l),
        site=np.concatenate(site_l),
        urban=np.concatenate(urban_l),
        uplink=np.concatenate(uplink_l),
        region_ids=np.arange(1, n_regions + 1, dtype=np.int64),
        site_ids=np.concatenate(site_ids),
    )
