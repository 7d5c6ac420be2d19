metadata description = 'Azure Communication Services with an Email service and an Azure-managed sender domain, for the alert emails.'

@description('Name of the Communication Services resource.')
param communicationServiceName string

@description('Name of the Email Communication Services resource.')
param emailServiceName string

@description('Where message data is stored at rest (a geography, not a region).')
param dataLocation string = 'Europe'

@description('Tags applied to the resources.')
param tags object = {}

@description('Local part of the sender address.')
param senderUsername string = 'DoNotReply'

resource emailService 'Microsoft.Communication/emailServices@2023-04-01' = {
  name: emailServiceName
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
  }
}

// Azure-managed domains need no DNS work; swap in a verified custom domain for production mail volume.
resource domain 'Microsoft.Communication/emailServices/domains@2023-04-01' = {
  parent: emailService
  name: 'AzureManagedDomain'
  location: 'global'
  tags: tags
  properties: {
    domainManagement: 'AzureManaged'
    userEngagementTracking: 'Disabled'
  }
}

resource communicationService 'Microsoft.Communication/communicationServices@2023-04-01' = {
  name: communicationServiceName
  location: 'global'
  tags: tags
  properties: {
    dataLocation: dataLocation
    linkedDomains: [
      domain.id
    ]
  }
}

@description('Resource id of the Communication Services resource (the scope of the sender role).')
output resourceId string = communicationService.id

@description('Name of the Communication Services resource.')
output name string = communicationService.name

@description('Endpoint the email client sends to.')
output endpoint string = 'https://${communicationService.properties.hostName}'

@description('Sender address on the Azure-managed domain.')
output senderAddress string = '${senderUsername}@${domain.properties.mailFromSenderDomain}'
