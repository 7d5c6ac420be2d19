metadata description = 'Flex Consumption plan and a Python function app that runs as a user-assigned identity, deploys from a blob container with that identity, and takes its app settings from the caller.'

@description('Name of the function app.')
param name string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Azure region.')
param location string

@description('Tags applied to the plan and the app.')
param tags object = {}

@description('azd service name (azure.yaml): only the app carries it as azd-service-name, since azd deploys to the one resource tagged with it.')
param serviceName string

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Blob endpoint of the app storage account (with trailing slash).')
param deploymentBlobEndpoint string

@description('Container in the app storage account that holds the deployment package.')
param deploymentContainerName string

@description('App settings. Flex Consumption sets the runtime from functionAppConfig: FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION must not be here.')
param appSettings object

@description('Python version of the worker.')
@allowed(['3.10', '3.11', '3.12'])
param pythonVersion string = '3.11'

@description('Memory per instance in MB.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@description('Upper bound of the scale-out.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': serviceName })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references in app settings resolve with the same identity.
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${deploymentBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: pythonVersion
      }
    }
  }
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: app
  name: 'appsettings'
  properties: appSettings
}

@description('Resource id of the function app.')
output resourceId string = app.id

@description('Name of the function app.')
output name string = app.name

@description('Default host name (Flex apps may get a generated, region-scoped name).')
output defaultHostName string = app.properties.defaultHostName

@description('Base URL of the app.')
output url string = 'https://${app.properties.defaultHostName}'
