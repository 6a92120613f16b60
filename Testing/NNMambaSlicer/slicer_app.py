"""An application-like MRML setup on slicer-core, and Slicer's own slice/3D views rendered offscreen.

slicer-core has MRML, the module logics and the displayable managers but no `slicer.app`; this
wires them together as the Slicer application does (see shared/SLICER_HEADLESS.md), so the module's
logic runs on a real scene and the views draw what Slicer would draw.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

import numpy as np  # noqa: E402
import slicer  # noqa: E402
import vtk  # noqa: E402

MODULE_LOGICS = {
    "Volumes": "vtkSlicerVolumesLogic",
    "Markups": "vtkSlicerMarkupsLogic",
    "Segmentations": "vtkSlicerSegmentationsModuleLogic",
    "Tables": "vtkSlicerTablesLogic",
    "Plots": "vtkSlicerPlotsLogic",
    "SubjectHierarchy": "vtkSlicerSubjectHierarchyModuleLogic",
}


class SlicerLikeApp:
    """One scene with an application logic and the module logics Slicer registers at start-up."""

    def __init__(self) -> None:
        self.scene = slicer.vtkMRMLScene()
        slicer.mrmlScene = self.scene
        crosshair = slicer.vtkMRMLCrosshairNode()
        crosshair.SetName("default")
        self.scene.AddNode(crosshair)
        self.app = slicer.vtkSlicerApplicationLogic()
        self.app.SetMRMLScene(self.scene)
        self.app.GetColorLogic().SetMRMLScene(self.scene)
        self.app.GetColorLogic().AddDefaultColorNodes()
        self.app.SetSliceLogics(vtk.vtkCollection())
        self.app.SetViewLogics(vtk.vtkCollection())
        slicer.vtkMRMLThreeDViewDisplayableManagerFactory.GetInstance().SetMRMLApplicationLogic(self.app)
        slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance().SetMRMLApplicationLogic(self.app)
        self.app.SetModuleLogic("Colors", self.app.GetColorLogic())
        self.logics = {}
        for name, className in MODULE_LOGICS.items():
            logic = getattr(slicer, className)()
            logic.SetMRMLScene(self.scene)
            logic.SetMRMLApplicationLogic(self.app)
            self.app.SetModuleLogic(name, logic)
            self.logics[name] = logic
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(self.scene, True)
        # slicer.util helpers reach module logics through slicer.modules.<name>.logic()
        slicer.modules = SimpleNamespace(**{name.lower(): SimpleNamespace(logic=lambda logic=logic: logic)
                                            for name, logic in self.logics.items()})
        self._keepAlive = []
        self._views = 0

    # -- scene files -----------------------------------------------------------------------------
    def saveScene(self, folder: Path, nodes) -> Path:
        """Write each storable node with its default storage node, then the .mrml that lists them."""
        folder.mkdir(parents=True, exist_ok=True)
        for node in nodes:
            node.AddDefaultStorageNode()
            storage = node.GetStorageNode()
            extension = storage.GetDefaultWriteFileExtension()
            storage.SetFileName(str(folder / f"{node.GetID()}.{extension}"))
            if not storage.WriteData(node):
                raise RuntimeError(f"could not write {node.GetName()}")
        self.scene.SetURL(str(folder / "scene.mrml"))
        if not self.scene.Commit():
            raise RuntimeError("could not write the scene")
        return folder / "scene.mrml"

    def loadScene(self, mrmlPath: Path) -> None:
        self.scene.SetURL(str(mrmlPath))
        if not self.scene.Connect():
            raise RuntimeError(f"could not read {mrmlPath}")

    # -- views -----------------------------------------------------------------------------------
    def renderThreeD(self, path: Path, size=(480, 480), direction=None) -> np.ndarray:
        """Slicer's 3D view (models, segment surfaces, markups), camera reset on what is shown."""
        window, renderer = self._offscreenWindow(size)
        group = slicer.vtkMRMLDisplayableManagerGroup()
        factory = slicer.vtkMRMLThreeDViewDisplayableManagerFactory.GetInstance()
        for manager in ("vtkMRMLCameraDisplayableManager", "vtkMRMLViewDisplayableManager",
                        "vtkMRMLModelDisplayableManager", "vtkMRMLSegmentationsDisplayableManager3D",
                        "vtkMRMLMarkupsDisplayableManager"):
            if not factory.IsDisplayableManagerRegistered(manager):
                factory.RegisterDisplayableManager(manager)
        group.Initialize(factory, renderer)
        viewLogic = slicer.vtkMRMLViewLogic()
        viewLogic.SetMRMLApplicationLogic(self.app)
        viewLogic.SetMRMLScene(self.scene)
        self.app.GetViewLogics().AddItem(viewLogic)
        self._views += 1
        viewNode = viewLogic.AddViewNode(str(self._views))  # one view node per picture, as Slicer's layouts do
        viewNode.SetBackgroundColor(0, 0, 0)
        viewNode.SetBackgroundColor2(0, 0, 0)
        viewNode.SetBoxVisible(False)
        viewNode.SetAxisLabelsVisible(False)
        group.SetMRMLDisplayableNode(viewNode)
        window.Render()
        renderer.ResetCamera()
        if direction is not None:
            camera = renderer.GetActiveCamera()
            focal = np.array(camera.GetFocalPoint())
            distance = camera.GetDistance()
            camera.SetPosition(*(focal + distance * np.asarray(direction, dtype=float)))
            camera.SetViewUp(0, 0, 1)
            renderer.ResetCamera()
        window.Render()
        self._keepAlive += [window, renderer, group, viewLogic]
        return self._save(window, path)

    def renderSlice(self, path: Path, backgroundVolume, layoutName: str = "Red", rasOffset=None,
                    size=(480, 480), orientation: str = "Axial") -> tuple:
        """Slicer's slice view: the volume drawn behind segment fills/outlines and markups glyphs.

        Each call needs its own `layoutName` (one slice node per view, as in Slicer's layouts).

        Returns (rgb image, xy-to-RAS 4x4) so a test can map a pixel back to a RAS point."""
        window, renderer = self._offscreenWindow(size)
        factory = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance()
        for manager in ("vtkMRMLSegmentationsDisplayableManager2D", "vtkMRMLMarkupsDisplayableManager",
                        "vtkMRMLModelSliceDisplayableManager"):
            if not factory.IsDisplayableManagerRegistered(manager):
                factory.RegisterDisplayableManager(manager)
        sliceLogic = slicer.vtkMRMLSliceLogic()
        sliceLogic.SetMRMLApplicationLogic(self.app)
        sliceLogic.SetMRMLScene(self.scene)
        self.app.GetSliceLogics().AddItem(sliceLogic)
        sliceNode = sliceLogic.AddSliceNode(layoutName)
        sliceNode.SetDimensions(size[0], size[1], 1)
        # The scene's default-node presets do not reach a node made by AddSliceNode: add them here.
        for preset in ("Axial", "Sagittal", "Coronal"):
            matrix = vtk.vtkMatrix3x3()
            getattr(slicer.vtkMRMLSliceNode, f"Get{preset}SliceToRASMatrix")(matrix, True)
            sliceNode.AddSliceOrientationPreset(preset, matrix)
        sliceNode.SetOrientation(orientation)
        sliceLogic.GetSliceCompositeNode().SetBackgroundVolumeID(backgroundVolume.GetID())
        sliceLogic.FitSliceToVolume(backgroundVolume, size[0], size[1])
        if rasOffset is not None:
            sliceNode.JumpSliceByOffsetting(*rasOffset)
        # The slice image goes in first so the managers' overlays (segments, markups) draw on top of it.
        mapper = vtk.vtkImageMapper()
        mapper.SetInputConnection(sliceLogic.GetImageDataConnection())
        mapper.SetColorWindow(255)
        mapper.SetColorLevel(127.5)
        actor = vtk.vtkActor2D()
        actor.SetMapper(mapper)
        renderer.AddViewProp(actor)
        group = slicer.vtkMRMLDisplayableManagerGroup()
        group.Initialize(factory, renderer)
        group.SetMRMLDisplayableNode(sliceNode)
        window.Render()
        xyToRas = np.array([[sliceNode.GetXYToRAS().GetElement(r, c) for c in range(4)] for r in range(4)])
        self._keepAlive += [window, renderer, group, sliceLogic, mapper, actor]
        return self._save(window, path), xyToRas

    @staticmethod
    def _offscreenWindow(size):
        window = vtk.vtkRenderWindow()
        window.SetOffScreenRendering(1)
        window.SetSize(*size)
        window.SetMultiSamples(0)
        renderer = vtk.vtkRenderer()
        renderer.SetBackground(0, 0, 0)
        window.AddRenderer(renderer)
        interactor = vtk.vtkRenderWindowInteractor()
        interactor.SetRenderWindow(window)
        return window, renderer

    @staticmethod
    def _save(window, path: Path) -> np.ndarray:
        grabber = vtk.vtkWindowToImageFilter()
        grabber.SetInput(window)
        grabber.ReadFrontBufferOff()
        grabber.Update()
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = vtk.vtkPNGWriter()
        writer.SetFileName(str(path))
        writer.SetInputConnection(grabber.GetOutputPort())
        writer.Write()
        from vtk.util import numpy_support

        image = grabber.GetOutput()
        w, h, _ = image.GetDimensions()
        rgb = numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(h, w, -1)[..., :3]
        return rgb  # row 0 is the bottom of the picture (VTK's y goes up)


# An oblique grid: rotated 30 degrees about S and 10 about R, anisotropic spacing, off-centre origin.
def obliqueIjkToRas() -> np.ndarray:
    a, b = np.deg2rad(30), np.deg2rad(10)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    m = np.eye(4)
    m[:3, :3] = rz @ rx @ np.diag([1.5, 1.2, 2.5])
    m[:3, 3] = (-31.0, 12.5, 7.25)
    return m
