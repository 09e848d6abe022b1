"""What a detection leaves behind, defined once for the CLI, the demo and the Slicer module.

  names         the output file names in DIR/<stem>/
  segment       the "Anomaly" segment: id, name, colour, terminology (standard library only)
  report        report.json: built after a detection, updated by the Slicer export
  write         writes every output file of one detection
  segmentation  .seg.nrrd writer (slicerio)
  overview      overview.png
  folders       output folders that appear whole or not at all; the run summary
  findings      every region of the mask named by anatomy (report, CLI table, overview, Slicer)
  anatomy       the label atlas's names: DLMUSE name, lobe, side, readable name
  atlas_transfer  the label atlas carried onto the input grid (deformable, affine fallback)

Nothing is imported here, so the light modules stay light for the Slicer module.
"""
