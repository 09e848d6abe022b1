"""Volume nodes <-> numpy arrays / SimpleITK images, with exact geometry.

MRML stores geometry as an IJK-to-RAS matrix; ITK (and therefore SimpleITK, NIfTI and
NRRD files read by the core) uses LPS physical space. The two differ by a sign flip of
the first two axes, applied to both the direction columns and the origin.
Arrays follow the SimpleITK/numpy convention: shape (k, j, i), i varying fastest, which
is also the memory order of vtkImageData scalars, so no transposition is needed.
"""
from __future__ import annotations

import numpy as np
import vtk
from vtk.util import numpy_support

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def ijk_to_ras_from_lps(spacing, origin, direction) -> np.ndarray:
    """4x4 IJK-to-RAS matrix from ITK-style (LPS) spacing, origin and 3x3 direction."""
    direction = np.asarray(direction, dtype=float).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = LPS_TO_RAS @ direction @ np.diag(np.asarray(spacing, dtype=float))
    matrix[:3, 3] = LPS_TO_RAS @ np.asarray(origin, dtype=float)
    return matrix


def lps_geometry_from_ijk_to_ras(matrix: np.ndarray):
    """Inverse of ijk_to_ras_from_lps: (spacing, origin, direction 3x3) in LPS."""
    matrix = np.asarray(matrix, dtype=float)
    lps_columns = LPS_TO_RAS @ matrix[:3, :3]
    spacing = np.linalg.norm(lps_columns, axis=0)
    direction = lps_columns / spacing
    origin = LPS_TO_RAS @ matrix[:3, 3]
    return tuple(spacing), tuple(origin), direction


def vtk_matrix(matrix: np.ndarray) -> vtk.vtkMatrix4x4:
    result = vtk.vtkMatrix4x4()
    for row in range(4):
        for column in range(4):
            result.SetElement(row, column, float(matrix[row, column]))
    return result


def numpy_matrix(matrix: vtk.vtkMatrix4x4) -> np.ndarray:
    return np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])


def ijk_to_ras_of(volume_node) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    return numpy_matrix(matrix)


def image_data_from_array(array: np.ndarray) -> vtk.vtkImageData:
    """A vtkImageData owning a copy of `array` (k, j, i); geometry stays in the node."""
    array = np.ascontiguousarray(array)
    if array.ndim != 3:
        raise ValueError(f"expected a 3D (k, j, i) array, got shape {array.shape}")
    image = vtk.vtkImageData()
    image.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    # deep=True: the node must not depend on the lifetime of the caller's array.
    scalars = numpy_support.numpy_to_vtk(array.ravel(), deep=True)
    image.GetPointData().SetScalars(scalars)
    return image


def update_volume_from_array(volume_node, array: np.ndarray, ijk_to_ras: np.ndarray) -> None:
    """Replace the voxels and geometry of an existing volume node."""
    volume_node.SetIJKToRASMatrix(vtk_matrix(ijk_to_ras))
    volume_node.SetAndObserveImageData(image_data_from_array(array))


def array_from_volume(volume_node) -> np.ndarray:
    """A (k, j, i) numpy VIEW of the node's voxels (no copy: cheap for slider updates)."""
    image = volume_node.GetImageData()
    if image is None or image.GetPointData().GetScalars() is None:
        raise ValueError(f"volume {volume_node.GetName()!r} holds no voxels")
    dims = image.GetDimensions()
    scalars = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars())
    if image.GetNumberOfScalarComponents() != 1:
        raise ValueError(f"volume {volume_node.GetName()!r} is not a single-component volume")
    return scalars.reshape(dims[2], dims[1], dims[0])


def update_volume_from_sitk(volume_node, image) -> None:
    """Load a SimpleITK image (LPS) into a volume node (RAS), voxels and geometry."""
    import SimpleITK as sitk

    update_volume_from_array(
        volume_node,
        sitk.GetArrayFromImage(image),
        ijk_to_ras_from_lps(image.GetSpacing(), image.GetOrigin(), image.GetDirection()),
    )


def sitk_from_volume(volume_node):
    """A SimpleITK image (LPS) with the node's voxels and exact geometry.

    The node's parent transform is deliberately not applied: detection runs on the
    voxel grid as stored, and results are put back under the same transform.
    """
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.array(array_from_volume(volume_node)))
    spacing, origin, direction = lps_geometry_from_ijk_to_ras(ijk_to_ras_of(volume_node))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(tuple(direction.ravel()))
    return image
